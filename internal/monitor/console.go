package monitor

import (
	"errors"
	"log/slog"
	"os"
	"syscall"
)

// consoleChunk is the most console output read at once. A pty master
// rarely returns more than 4 KiB per read.
const consoleChunk = 8 << 10

// copyConsole copies the guest's console output to the log and to the
// attached clients until the console ends: EIO once no process holds the
// pty's other side any more, or an error once the monitor closes it.
func copyConsole(console *os.File, history *consoleLog, clients *attachServer, log *slog.Logger) {
	buf := make([]byte, consoleChunk)
	logFailing := false
	for {
		n, err := console.Read(buf)
		if n > 0 {
			// Log errors (a full disk) are reported once per failure
			// spell, and do not stop the console for attached clients.
			if _, werr := history.Write(buf[:n]); werr != nil && !logFailing {
				log.Error("console log write failed, output is being lost", "err", werr)
				logFailing = true
			} else if werr == nil && logFailing {
				log.Info("console log writable again")
				logFailing = false
			}
			clients.broadcast(buf[:n])
		}
		if err != nil {
			if !errors.Is(err, syscall.EIO) && !errors.Is(err, os.ErrClosed) {
				log.Warn("read console", "err", err)
			}
			return
		}
	}
}
