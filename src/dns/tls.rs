//! DoT (WIP)
