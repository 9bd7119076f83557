//! The preloaded agent.
