//! Integration tests: the real `assumed` binary against a real STS (moto,
//! behind a counting, fault-injecting proxy) and real clients. See
//! tests/README.md.
//!
//! Linux only: the harness runs a real Secret Service on D-Bus, network
//! namespaces and /proc lookups. On macOS this binary is empty, so that
//! `cargo clippy --all-targets` checks the crate for macOS (scripts/mac-check).
#![cfg(target_os = "linux")]

mod harness;

mod architecture;
mod caching;
mod cli;
mod clients;
mod compose;
mod console;
mod container;
mod discovery;
mod docker;
mod doctor;
mod endpoints;
mod errors;
mod hardening;
mod imds;
mod keys;
mod keys_daemon;
mod keys_file;
mod keys_move;
mod login;
mod metrics;
mod mfa;
mod profiles;
mod reliability;
mod reload;
mod sdk_matrix;
mod security;
mod service;
mod soak;
mod users;
mod users_home;
