//! Request handlers, one file per area.

pub mod assets;
pub mod health;
pub mod home;
