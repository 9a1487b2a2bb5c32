//! Wire protocols. Each transport decodes its format into the request core's call
//! (`crate::request`), encodes the answer, and maps errors through `crate::error`; none of them
//! touches the engine or keeps its own request bookkeeping.

mod activity;
mod coalesce;
pub mod connections;
pub mod grpc;
pub mod health;
pub mod json;
pub mod ops_http;
mod refuse;
pub mod rest;
pub mod tls;
pub mod v2;
