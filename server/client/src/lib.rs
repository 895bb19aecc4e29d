//! What a client of a Capstan cluster needs, and nothing of a node: the credential internal calls
//! carry (`credential`: the cluster secret or a cell's own, over TLS), the TLS settings of a process
//! (`tls`), how a process is given its secret (`secret`), the flags every mode shares (`flags`) and
//! the wall clock (`clock`). The cell agent, the CLIs, the Raft network and the node all build on it;
//! it depends on the contract's transport (tonic) and no Capstan crate.

pub mod clock;
pub mod credential;
pub mod flags;
pub mod secret;
pub mod tls;
