//! Request handlers, one file per area.

pub mod account;
pub mod activation;
pub mod assets;
pub mod cas;
pub mod demo;
pub mod health;
pub mod home;
pub mod login;
pub mod oidc;
pub mod recovery;
