//! Wire protocols. Each transport decodes its format, calls into `serving` and the repository,
//! and maps errors through `crate::error`; none of them touches the engine directly.

mod activity;
pub mod connections;
pub mod grpc;
pub mod health;
pub mod ops_http;
mod refuse;
pub mod rest;
pub mod tls;
