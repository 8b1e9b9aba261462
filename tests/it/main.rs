//! Integration tests: the real `assumed` binary against a real STS (moto,
//! behind a counting, fault-injecting proxy) and real clients. See
//! tests/README.md.
//!
//! The suite runs on Linux (a Secret Service on D-Bus, network namespaces,
//! /proc, systemd, Docker). CI also type-checks and lints it for macOS
//! (docs/macos.md): what cannot even compile there is gated where it is.

mod harness;

mod architecture;
mod caching;
mod cli;
mod clients;
mod compose;
mod confirm;
mod console;
mod container;
mod discovery;
mod docker;
mod doctor;
mod endpoints;
mod errors;
mod first_run;
mod hardening;
mod imds;
// The keyring tests run against a real Secret Service (harness/keyring.rs).
#[cfg(target_os = "linux")]
mod keys;
#[cfg(target_os = "linux")]
mod keys_daemon;
#[cfg(target_os = "linux")] // shares keys.rs's helpers
mod keys_file;
#[cfg(target_os = "linux")]
mod keys_move;
mod login;
mod metrics;
mod mfa;
mod package;
mod profiles;
mod reliability;
mod reload;
mod sdk_matrix;
mod security;
mod service;
mod soak;
mod users;
mod users_home;
