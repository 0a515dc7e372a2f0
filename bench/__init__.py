"""labchat benchmarks (`make bench`); see bench/README.md."""
