package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// launch runs bin with args in dir, its output in logPath, and waits until
// the process answers INFO on addr as itself: by its pid (not another
// process holding the port) and, when mode is not empty, with that
// redis_mode. It returns the process and a channel closed when it exits. On
// failure it kills the process and returns an error with the log's tail,
// matching errAddrInUse when the port was taken. Server and Sentinel start
// their processes with it.
func launch(bin, dir string, args []string, logPath, addr, mode string) (*exec.Cmd, chan struct{}, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	setProcAttr(cmd)
	err = cmd.Start()
	_ = logf.Close() // the child has its own copy
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	fail := func(err error) (*exec.Cmd, chan struct{}, error) {
		_ = cmd.Process.Kill()
		<-done
		tail := logTail(logPath)
		if strings.Contains(tail, "Address already in use") {
			err = fmt.Errorf("%w: %v", errAddrInUse, err)
		}
		return nil, nil, fmt.Errorf("%w\n--- %s (tail):\n%s", err, logPath, tail)
	}

	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 500 * time.Millisecond, PoolSize: 1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), serverStartTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	want := strconv.Itoa(cmd.Process.Pid)
	for {
		// INFO rather than PING: the answer must come from our process.
		info, err := c.Info(ctx, "server").Result()
		if err == nil {
			if infoField(info, "process_id") == want && (mode == "" || infoField(info, "redis_mode") == mode) {
				return cmd, done, nil
			}
			err = errors.New(addr + " is answered by another process")
		}
		select {
		case <-done:
			return fail(fmt.Errorf("%s exited: %v", bin, cmd.ProcessState))
		case <-ctx.Done():
			return fail(fmt.Errorf("%s on %s did not answer within %v: %v", bin, addr, serverStartTimeout, err))
		case <-tick.C:
		}
	}
}

// logTail returns the last 20 lines of the log at path.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
