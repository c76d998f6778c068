//! DNS listeners (WIP)
