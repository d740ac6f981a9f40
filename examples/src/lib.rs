//! Runnable MARIE examples: see `examples/`.
