// Command deps-check rehearses `make deps` on a fresh machine: it lays a
// minimal Debian root (debootstrap --variant=minbase, from the mirror in the
// host's apt sources, with the host's apt configuration as a fresh machine of
// this kind has it), runs scripts/deps.sh inside it as root in a chroot, and
// then asks `polyvisor host check --requirements` there whether every
// declared host requirement is present. It also compares the script's
// package list with the declared one, which catches a package the minimal
// base happens to carry. A requirement deps.sh does not install fails the
// run with its name and package.
//
// The minimal base is cached between runs (under --cache); what deps.sh
// installs never is: each run installs on a fresh overlay of the base in a
// private mount namespace, and throws it away.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/template"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == insideArg {
		if err := inside(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "deps-check:", err)
			os.Exit(1)
		}
		return
	}
	cacheDir := flag.String("cache", "/var/cache/polyvisor/deps-check", "where the minimal Debian base is kept between runs")
	suite := flag.String("suite", "bookworm", "the Debian suite of the fresh root")
	polyvisor := flag.String("polyvisor", "bin/polyvisor", "the polyvisor binary to run inside (make build makes it)")
	script := flag.String("script", "scripts/deps.sh", "the install script to rehearse")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	began := time.Now()
	if err := run(ctx, *cacheDir, *suite, *polyvisor, *script); err != nil {
		fmt.Fprintln(os.Stderr, "deps-check: FAILED:", err)
		os.Exit(1)
	}
	fmt.Printf("deps-check: passed in %s: %s installs every declared host requirement on a fresh Debian %s\n",
		time.Since(began).Round(time.Second), *script, *suite)
}

func run(ctx context.Context, cacheDir, suite, polyvisor, script string) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (debootstrap, chroot, mounts): run make test as root")
	}
	for _, f := range []string{polyvisor, script} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%w (run it from the repository root after make build)", err)
		}
	}
	listErr := compareLists(script)
	base, err := minimalBase(ctx, cacheDir, suite, arch.Host().Debian)
	if err != nil {
		return err
	}
	rehearsalErr := rehearse(ctx, base, polyvisor, script)
	return errors.Join(listErr, rehearsalErr)
}

// compareLists checks the script's package list against the declared one.
func compareLists(script string) error {
	pkgs, err := scriptPackages(script)
	if err != nil {
		return err
	}
	if diff := hostreq.ListDiff(pkgs); diff != "" {
		return fmt.Errorf("%s %s", script, diff)
	}
	fmt.Printf("deps-check: %s lists the %d declared packages\n", script, len(pkgs))
	return nil
}

// minimalBase returns the cached minimal root of suite for debArch, making
// it first when there is none. It is made under a temporary name and renamed
// into place, so an interrupted build is never taken for a base.
func minimalBase(ctx context.Context, cacheDir, suite, debArch string) (string, error) {
	base := filepath.Join(cacheDir, suite+"-"+debArch+"-minbase")
	if _, err := os.Stat(filepath.Join(base, "etc", "debian_version")); err == nil {
		fmt.Printf("deps-check: using the cached minimal %s base %s\n", suite, base)
		return base, nil
	}
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return "", fmt.Errorf("create cache: %w", err)
	}
	staging, err := os.MkdirTemp(cacheDir, ".staging-")
	if err != nil {
		return "", fmt.Errorf("create cache: %w", err)
	}
	defer os.RemoveAll(staging)
	rootfs := filepath.Join(staging, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return "", err
	}
	began := time.Now()
	fmt.Printf("deps-check: debootstrapping a minimal %s base (cached for later runs)\n", suite)
	if err := template.Debootstrap(ctx, rootfs, suite, debArch, nil, nil); err != nil {
		return "", err
	}
	os.RemoveAll(base) // a base without debian_version is an unfinished one
	if err := os.Rename(rootfs, base); err != nil {
		return "", fmt.Errorf("keep the base: %w", err)
	}
	fmt.Printf("deps-check: base made in %s\n", time.Since(began).Round(time.Second))
	return base, nil
}
