//! Header names the gateway reads, sets or passes on to the node.

/// The request id header: taken from the caller when sent, else generated; answered back, and
/// passed to the node in the gRPC call's metadata.
pub const REQUEST_ID: &str = "x-request-id";
