//! The process's file-descriptor limit and the connection caps sized from it. A fleet of cells
//! keeps one gRPC connection each to the leader, so the caps must follow what the process may
//! open, not a constant: at start the soft limit is raised to the hard one, and a listener whose
//! cap is not given on the command line gets its share of what is left after the process's own
//! files.

use std::sync::OnceLock;

use capstan_gateway::common::serve::{GRPC_CONNECTIONS_MAX, HTTP_CONNECTIONS_MAX};

/// Descriptors kept for the process's own use, outside both listeners' caps: sled's files, the
/// Raft peers and forwarding channels, outbound calls to cells, the embedded cell's instances and
/// their log files, the event streams' readers. Generous on purpose: running out of descriptors
/// fails a flush or an accept, which is worse than refusing a connection at a cap.
pub const FDS_RESERVED: u64 = 1_024;
/// The highest soft limit asked for: a hard limit of "unlimited" (or a huge one) is no reason to
/// size listeners for millions of connections.
pub const FILE_LIMIT_MAX: u64 = 1 << 20;
/// The gRPC listener's share of the descriptors left after [`FDS_RESERVED`], in quarters (cells,
/// peers and gateways are many; REST clients come through gateways).
const GRPC_SHARE_QUARTERS: u64 = 3;

/// The file limit as found at start and as raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileLimit {
    pub before: u64,
    pub now: u64,
}

/// Raises the soft file limit to the hard one (at most [`FILE_LIMIT_MAX`]) once, and says what
/// it is. Where the limit cannot be read or raised, the one in force is used.
pub fn raised() -> FileLimit {
    static LIMIT: OnceLock<FileLimit> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
            return FileLimit {
                before: FDS_RESERVED,
                now: FDS_RESERVED,
            };
        };
        let wanted = hard.min(FILE_LIMIT_MAX).max(soft);
        let now = if wanted > soft && setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).is_ok() {
            wanted
        } else {
            soft
        };
        FileLimit { before: soft, now }
    })
}

/// The (gRPC, REST) connection caps for a file limit: the descriptors left after the reserve,
/// three quarters to gRPC and one to REST, never below the fixed defaults that a 1,024 limit was
/// sized for.
pub fn caps(file_limit: u64) -> (usize, usize) {
    let budget = file_limit.saturating_sub(FDS_RESERVED);
    let grpc = budget / 4 * GRPC_SHARE_QUARTERS;
    let http = budget / 4;
    let at_least = |n: u64, floor: usize| usize::try_from(n).unwrap_or(usize::MAX).max(floor);
    (
        at_least(grpc, GRPC_CONNECTIONS_MAX),
        at_least(http, HTTP_CONNECTIONS_MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_the_file_limit_and_never_fall_below_the_fixed_defaults() {
        assert_eq!(caps(1_024), (GRPC_CONNECTIONS_MAX, HTTP_CONNECTIONS_MAX));
        assert_eq!(caps(0), (GRPC_CONNECTIONS_MAX, HTTP_CONNECTIONS_MAX));
        // Debian's systemd default hard limit: room for a fleet of thousands of cells
        let (grpc, http) = caps(524_288);
        assert_eq!((grpc, http), (392_448, 130_816));
        let (grpc, _) = caps(20_000);
        assert!(grpc >= 5_000 + 3 * 2, "5,000 cells and a few peers: {grpc}");
        let (grpc, http) = caps(FILE_LIMIT_MAX);
        assert!(grpc as u64 + http as u64 + FDS_RESERVED <= FILE_LIMIT_MAX);
    }

    #[test]
    fn the_limit_is_raised_once_and_never_lowered() {
        let l = raised();
        assert!(l.now >= l.before);
        assert_eq!(raised(), l);
    }
}
