package daemon

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

func TestOperationsReportProgressSuccessAndFailure(t *testing.T) {
	ops := newOperations(nil)
	ctx := context.Background()
	release := make(chan struct{})
	ok := ops.start(ctx, "build", "busybox", func(ctx context.Context, progress func(api.Progress)) error {
		progress(api.Progress{Phase: "copying", Done: 1, Total: 2})
		<-release
		return nil
	})
	if ok.Status != api.OpRunning || ok.ID == "" {
		t.Fatalf("new operation: %+v", ok)
	}
	if early, _ := ops.wait(ctx, ok.ID, 50*time.Millisecond); early.Status != api.OpRunning || early.Progress.Phase != "copying" {
		t.Errorf("while running: %+v", early)
	}
	close(release)
	if done, _ := ops.wait(ctx, ok.ID, 5*time.Second); done.Status != api.OpSuccess {
		t.Errorf("after success: %+v", done)
	}
	bad := ops.start(ctx, "launch", "web", func(context.Context, func(api.Progress)) error {
		return fmt.Errorf("guest web: %w", api.ErrExists)
	})
	failed, _ := ops.wait(ctx, bad.ID, 5*time.Second)
	if failed.Status != api.OpFailure || failed.ErrorKind != "exists" || failed.Error != "guest web: already exists" {
		t.Errorf("after failure: %+v", failed)
	}
	if _, err := ops.get("nosuch"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	ops.wg.Wait()
}
