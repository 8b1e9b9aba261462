//! `assumed`: a local AWS credential-vending daemon. See ARCHITECTURE.md for
//! the map; `cli` is the entry point.

pub mod address_file;
pub mod arn;
pub mod attention;
pub mod aws_files;
pub mod cache;
pub mod cli;
pub mod client_env;
pub mod clients;
pub mod completions;
pub mod compose;
pub mod config;
pub mod console;
pub mod credentials;
pub mod daemon;
pub mod daemon_client;
pub mod doctor;
pub mod error_chain;
pub mod healthcheck;
pub mod init;
pub mod install;
pub mod keys;
pub mod keys_cmd;
pub mod local_client;
pub mod logging;
pub mod memory;
pub mod notify;
pub mod own_address;
pub mod peer;
pub mod profiles;
pub mod server;
pub mod service;
pub mod sts;
pub mod subnet;
pub mod token;
