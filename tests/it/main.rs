//! All integration tests in one binary (one link, one run). Run optimized:
//! `cargo test --release` — the statistical tests need millions of samples.

mod chaos;
mod cli;
mod client;
mod core;
mod determinism;
mod faults_account;
mod faults_data;
mod faults_deps;
mod faults_nodes;
mod gameday;
mod kernel;
mod queueing;
mod reconcile;
mod scenarios;
mod series;
mod token_skew;
mod traffic;
