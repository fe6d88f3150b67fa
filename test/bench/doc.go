// Package bench holds polyvisor's benchmarks (bench_test.go): launch
// latency against raw runc, listing 500 guests, and the idle memory cost of
// 50 containers. They drive real daemons through internal/testenv, need
// root, runc and busybox-static, and are run by `make bench`; the results
// are recorded in docs/benchmarks.md.
package bench
