//! Subcommands that help an operator without starting the server:
//! `streamgate token decode|verify` ([`token`]), whose pure parts
//! (reading a JWT, verdicts and times in words) are in [`inspect`].

pub mod inspect;
pub mod token;
