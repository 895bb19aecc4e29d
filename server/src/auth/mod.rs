//! Auth for every family and every port: one check on every gRPC call a node serves
//! ([`guard`]), the tokens it checks ([`tokens`], signed with [`keys`]), the scope each call needs
//! ([`scopes`]), the `Auth` service that issues them ([`service`]), the `[auth]` config
//! ([`config`]) and the internal credential's client side ([`client`]).
//!
//! The gateway holds no key and checks nothing itself: it passes the caller's `Authorization`
//! header on as gRPC metadata and answers a refusal in the family's shape.

/// The internal credential's client side: how a process is given its secret (the client crate's).
pub use capstan_client::secret as client;
pub mod config;
pub mod guard;
pub mod keys;
pub mod scopes;
pub mod service;
pub mod tokens;

pub use guard::{Authenticator, Caller, Guard};
