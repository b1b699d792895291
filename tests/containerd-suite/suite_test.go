// Package suite runs containerd's own snapshotter conformance suite (snapshots/testsuite, from
// Debian's golang-github-containerd-containerd-dev) against `ovlink snapshotter serve`, reached
// through containerd's proxy client (snapshots/proxy) over a gRPC unix socket: exactly how
// containerd itself talks to a [proxy_plugins] snapshotter.
//
// Every suite case starts its own server on a fresh root (the suite hands each case a new
// directory). Environment: OVLINK_BIN (the ovlink binary, required) and OVLINK_DRIVER
// (overlay or overlay2, required). Build offline in GOPATH mode:
//
//	GO111MODULE=off GOPATH=<private>:/usr/share/gocode go test -c -o suite.test .
package suite

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

func TestOvlinkSnapshotter(t *testing.T) {
	bin := os.Getenv("OVLINK_BIN")
	driver := os.Getenv("OVLINK_DRIVER")
	if bin == "" || driver == "" {
		t.Fatal("set OVLINK_BIN (the ovlink binary) and OVLINK_DRIVER (overlay or overlay2)")
	}
	testsuite.SnapshotterSuite(t, "ovlink-"+driver, func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		sock := filepath.Join(root, "snapshotter.sock")
		cmd := exec.Command(bin, "--root", root, "--driver", driver, "snapshotter", "serve", "--socket", sock)
		logf, err := os.Create(filepath.Join(filepath.Dir(root), "ovlink.log"))
		if err != nil {
			return nil, nil, err
		}
		cmd.Stdout = logf
		cmd.Stderr = logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			return nil, nil, err
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		stop := func() error {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-exited:
				logf.Close()
				return err
			case <-time.After(60 * time.Second):
				_ = cmd.Process.Kill()
				logf.Close()
				return fmt.Errorf("ovlink snapshotter did not stop on SIGTERM")
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if c, err := net.Dial("unix", sock); err == nil {
				c.Close()
				break
			}
			select {
			case err := <-exited:
				logf.Close()
				out, _ := os.ReadFile(logf.Name())
				return nil, nil, fmt.Errorf("ovlink snapshotter exited at start (%v): %s", err, out)
			default:
			}
			if time.Now().After(deadline) {
				_ = stop()
				return nil, nil, fmt.Errorf("ovlink snapshotter did not listen on %s", sock)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// As containerd dials a proxy plugin (Debian's grpc predates credentials/insecure).
		conn, err := grpc.Dial(sock, grpc.WithInsecure(),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", addr)
			}))
		if err != nil {
			_ = stop()
			return nil, nil, err
		}
		sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "ovlink")
		return sn, func() error {
			cerr := conn.Close()
			if err := stop(); err != nil {
				return err
			}
			return cerr
		}, nil
	})
}
