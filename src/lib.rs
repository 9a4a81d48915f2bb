//! Sésame: the single-sign-on identity provider of a university (CAS 1/2/3 and OpenID Connect).
//!
//! Layers (DESIGN.md §2; dependencies point inward):
//! - foundation: [`config`], [`clock`], [`entropy`], [`locale`], [`storage`] (the vocabulary of storage ports);
//! - domain: [`accounts`], [`login`], [`sessions`], [`keys`], [`audit`], [`one_time`] — each declares
//!   the storage port it needs;
//! - protocols: [`cas`] and [`oidc`] — no HTTP, no SQL; [`relying_parties`] holds their registries;
//! - adapters: [`store`] (SQLite and PostgreSQL), [`web`], [`cli`], [`jobs`], [`mail`] (the outbox,
//!   SMTP and file transports, SMS);
//! - [`app`]: the composition root.

pub mod accounts;
pub mod app;
pub mod audit;
pub mod cas;
pub mod cli;
pub mod clock;
pub mod config;
pub mod entropy;
pub mod jobs;
pub mod keys;
pub mod locale;
pub mod login;
pub mod mail;
pub mod oidc;
pub mod one_time;
pub mod outbound;
pub mod relying_parties;
pub mod sessions;
pub mod storage;
pub mod store;
pub mod web;
