//! The integration suite: one binary, scenarios named as behaviours.

mod support;

mod accounts;
mod cli;
mod config;
mod keys;
mod readiness;
mod tls;
mod web;
