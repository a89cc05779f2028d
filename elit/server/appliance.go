package server

import (
	"context"
	"log/slog"
	"os"
	"time"
)

// clockFloor is a time before which the clock is surely unset (a board
// without a real-time clock boots in 1970).
var clockFloor = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// waitForClock returns once the clock is past clockFloor, or when ctx ends.
func waitForClock(ctx context.Context, log *slog.Logger, now func() time.Time, sleep func(time.Duration)) error {
	for i := 0; now().Before(clockFloor); i++ {
		if i == 0 {
			log.Warn("waiting for the clock to be set (NTP)", "now", now())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		sleep(time.Second)
	}
	return nil
}

// trialWatchdog keeps a trial boot alive while elit serves.
//
// elit-image update boots a new root file system once, as a trial
// (gokrazy.try_boot_inactive=1): the old root's init starts, arms the
// hardware watchdog, and execs the new root's init, which does not always
// get to the watchdog again (it races with mounting /dev). So on a trial
// boot elit pings the watchdog itself when it can open it. If elit does not
// come up, or exits, nobody pings: the watchdog resets the machine within
// its timeout and the boot partition, which still names the old root,
// brings the old version back by itself. A normal boot leaves the watchdog
// to gokrazy's init.
func trialWatchdog(ctx context.Context, log *slog.Logger, trial bool, device string) {
	if !trial {
		return
	}
	f, err := os.OpenFile(device, os.O_WRONLY, 0)
	if err != nil {
		log.Info("trial boot: the watchdog is not ours to ping", "err", err)
		return
	}
	log.Info("trial boot: elit pings the watchdog while it serves", "device", device)
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			// Any write but the magic 'V' is a ping (Linux
			// Documentation/watchdog/watchdog-api.rst); closing
			// without 'V' leaves the timer running.
			if _, err := f.Write([]byte{0}); err != nil {
				log.Warn("watchdog ping", "err", err)
			}
			select {
			case <-ctx.Done():
				f.Close()
				return
			case <-t.C:
			}
		}
	}()
}
