// Command quota, run inside a guest, takes or probes a kernel quota the
// host counts per host uid: the pipe buffer pages of one user
// (fs.pipe-user-pages-soft). Past that soft limit an unprivileged user's
// new pipes get two pages instead of sixteen and cannot grow: a guest
// that takes the whole quota starves every guest whose root is the same
// host uid.
//
//	quota hog   grows pipes to 1 MiB until the kernel refuses, prints
//	            "held N pipes", and holds them for five minutes at most
//	quota probe makes one pipe and prints "size BYTES grow ok|denied"
package main

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: quota hog|probe")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "hog":
		hog()
	case "probe":
		probe()
	default:
		fmt.Fprintln(os.Stderr, "usage: quota hog|probe")
		os.Exit(2)
	}
}

func hog() {
	held := 0
	for ; held < 4096; held++ {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			fmt.Printf("pipe: %v\n", err)
			os.Exit(1)
		}
		if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, 1<<20); err != nil {
			break // EPERM: the user's pages are spent
		}
	}
	fmt.Printf("held %d pipes\n", held)
	time.Sleep(5 * time.Minute)
}

func probe() {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		fmt.Printf("pipe: %v\n", err)
		os.Exit(1)
	}
	size, err := unix.FcntlInt(uintptr(p[1]), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		fmt.Printf("F_GETPIPE_SZ: %v\n", err)
		os.Exit(1)
	}
	grow := "ok"
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, 1<<20); err != nil {
		grow = "denied"
	}
	fmt.Printf("size %d grow %s\n", size, grow)
}
