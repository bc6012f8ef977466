// Package loadgen drives the whole checkout at a fixed offered rate or a fixed number of
// checkouts in flight, and measures it: end-to-end and per-step latency from the events on
// checkout.>, throughput, CPU and memory, JetStream writes per checkout, and the raw ceiling
// of the same JetStream server for comparison. cmd/loadgen is its command line; `make bench`
// runs it. The figures and how they were taken are in docs/PERFORMANCE.md.
package loadgen
