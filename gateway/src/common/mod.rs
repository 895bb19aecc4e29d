//! What every API family of the gateway uses: body reading (`body`), the node's structured errors
//! (`node_error`), the caller's credentials passed on to the node (`credentials`), streamed and enveloped lists (`list`), the families' error shapes by path
//! (`family`), the JSON error answer they are written into (`response`), header names (`headers`)
//! and the shared tower layers (`layers`).

pub mod body;
pub mod credentials;
pub mod extract;
pub mod family;
pub mod headers;
pub mod layers;
pub mod list;
pub mod node_error;
pub mod response;
pub mod serve;
