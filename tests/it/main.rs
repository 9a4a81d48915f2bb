//! The integration suite: one binary, scenarios named as behaviours.

mod support;

mod accounts;
mod activation;
mod cas;
mod cli;
mod config;
mod keys;
mod lockout;
mod login;
mod mail;
mod mfa;
mod oidc;
mod readiness;
mod recovery;
mod tls;
mod web;
