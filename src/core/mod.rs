//! The pure core: no I/O, no async, no clock. Everything here is a function
//! over owned data; I/O modules call into it, never the reverse.

pub mod delegation;
pub mod health;
pub mod names;
pub mod strategy;

#[cfg(test)]
mod strategy_tables;
