//! Strata's benchmarks live in `benches/`; each runs Strata and its peers side by side
//! in one run and prints ratios. See `docs/benchmarks.md` for figures.
