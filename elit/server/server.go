// Package server runs elit serve from a configuration: the state lock and
// the queue, the user database and its reloads (SIGHUP, a periodic check),
// the keys and certificates, the SMTP listeners (MX, submission,
// submissions), the deliverer, the HTTP servers (metrics, status page,
// ACME challenges), the control socket and, on a trial boot of the
// appliance, the watchdog. Run returns when its context ends, once the
// listeners and deliveries have stopped.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"elit.local/elit/certs"
	"elit.local/elit/config"
	"elit.local/elit/control"
	"elit.local/elit/deliver"
	"elit.local/elit/lists"
	"elit.local/elit/mailauth"
	"elit.local/elit/maillog"
	"elit.local/elit/metrics"
	"elit.local/elit/mtasts"
	"elit.local/elit/queue"
	"elit.local/elit/receive"
	"elit.local/elit/status"
	"elit.local/elit/tlsrpt"
	"elit.local/elit/userdb"
)

// Run checks cfg and serves until ctx ends. An invalid configuration is
// a *config.Error (config.IsInvalid).
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	if err := cfg.Check(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The recent mail log, for the status page.
	mailLog := maillog.New(maillog.Keep)
	log = slog.New(mailLog.Tee(log.Handler()))
	// Queue timestamps, retry times, certificate validity and Date headers
	// all need the time; a Raspberry Pi has no clock until NTP answers.
	if err := waitForClock(ctx, log, time.Now, time.Sleep); err != nil {
		return err
	}

	st := cfg.State
	if err := os.MkdirAll(st.Dir, 0o700); err != nil {
		return config.Errorf("state directory: %w", err)
	}
	// One server a state directory, and no offline elit queue edit while
	// it runs: held until Run returns (the kernel drops it if we die).
	lock, err := queue.LockDir(st.Queue(), control.LockWait)
	if errors.Is(err, queue.ErrLocked) {
		return config.Errorf("state directory %s is in use by another elit serve or elit queue (%w)", st.Dir, err)
	}
	if err != nil {
		return config.Errorf("%w", err)
	}
	defer lock.Unlock()
	q, err := queue.Open(st.Queue(), queue.WithLog(log.With("job", "queue")))
	if err != nil {
		return config.Errorf("%w", err)
	}
	loader := cfg.Loader(log)
	if err := loader.Load(); err != nil {
		return config.Errorf("%w", err)
	}
	certSource, err := certs.New(cfg.CertsConfig(), log.With("job", "certs"))
	if err != nil {
		return config.Errorf("%w", err)
	}
	// One secret signs the addresses we hand out: SRS addresses and the
	// bounce addresses of list members.
	key, err := loadKey(st.Key(), log)
	if err != nil {
		return config.Errorf("SRS key: %w", err)
	}
	keys, err := dkimKeys(cfg, log)
	if err != nil {
		return config.Errorf("%w", err)
	}
	bounces, err := lists.Open(st.ListBounces())
	if err != nil {
		return config.Errorf("list bounces: %w", err)
	}
	defer bounces.Close()
	dests, reports, inbox, err := tlsState(cfg, log)
	if err != nil {
		return config.Errorf("%w", err)
	}
	var sts *mtasts.Cache
	if cfg.TLSPolicy.MTASTS {
		sts, err = mtasts.Open(mtasts.Config{Dir: st.MTASTS(), Resolver: cfg.DNS(), Log: log.With("job", "mta-sts")})
		if err != nil {
			return config.Errorf("%w", err)
		}
		go sts.Run(ctx)
	}

	parts := config.Parts{
		Queue:      q,
		Users:      loader.DB,
		Log:        log,
		TLS:        tlsConfig(certSource),
		CertDER:    certSource.CertDER,
		Key:        key,
		ListSigner: lists.NewSigner(key),
		ListBounce: func(list, member, reason string) {
			if err := bounces.Record(list, member, reason, time.Now()); err != nil {
				log.Error("recording a list bounce", "list", list, "member", member, "err", err)
			}
		},
		Postmaster: defaultPostmaster(cfg, loader.DB(), log),
		Keys:       keys,

		MTASTS:         sts,
		TLSReports:     reports,
		TLSReportInbox: inbox,
		Destinations:   dests,
	}
	deliverer, err := deliver.New(cfg.DeliverConfig(parts))
	if err != nil {
		return config.Errorf("%w", err)
	}
	parts.Notify = deliverer.Notify
	srv, err := receive.New(cfg.ReceiveConfig(parts))
	if err != nil {
		return err
	}
	ls, err := listen(cfg.Listeners())
	if err != nil {
		return err
	}

	reload(ctx, loader, keys, cfg.Database.CheckInterval, log)
	boot := status.ReadBoot("/proc/cmdline")
	if err := serveHTTP(ctx, cfg, certSource, &status.Server{Version: cfg.Version, Domain: cfg.Domain, Hostname: cfg.Hostname,
		DBSource: cfg.Database.Source(), Queue: q, Loader: loader, Cert: certSource.Info, Boot: boot,
		Keys: keys, Records: cfg.DNSRecords, TLSReports: inbox.Summaries, Destinations: dests.List,
		Control: deliverer.Do, Resolver: cfg.DNS(), ListBounces: bounces.Read,
		Traffic: metrics.Traffic, MailLog: mailLog,
		Started: time.Now(), Log: log.With("job", "http")}, log); err != nil {
		closeAll(ls)
		return err
	}
	if err := control.Serve(ctx, st.ControlSocket(), deliverer, log); err != nil {
		closeAll(ls)
		return fmt.Errorf("control socket: %w", err)
	}
	// Started: the configuration is valid (an invalid one is one line).
	log.Info("configuration", "config", cfg)
	log.Info("elit serving", "version", cfg.Version, "domain", cfg.Domain, "hostname", cfg.Hostname, "state", st.Dir,
		"resolver", resolverName(cfg), "smarthost", cfg.Delivery.Smarthost, "deliver", cfg.Delivery.Enabled)
	trialWatchdog(ctx, log, boot.Trial, "/dev/watchdog")

	var wg sync.WaitGroup
	if cfg.Delivery.Enabled {
		deliverer.Load() // before the listeners accept: see Load
		wg.Go(func() { deliverer.Run(ctx) })
	}
	saves := map[string]func() error{"the destinations' TLS": dests.Save}
	if reports != nil {
		saves["the TLS report results"] = reports.Flush
		if sender := cfg.TLSReportSender(parts); cfg.Delivery.Enabled {
			wg.Go(func() { sender.Run(ctx) })
		}
	}
	wg.Go(func() { saveEvery(ctx, time.Minute, saves, log) })
	errc := make(chan error, len(ls))
	for _, l := range ls {
		wg.Go(func() {
			if err := srv.Serve(ctx, l.l, l.mode); err != nil {
				errc <- fmt.Errorf("%v: %w", l.mode, err)
				cancel()
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	log.Info("elit stopped")
	return nil
}

// saveEvery calls each save every interval, and once more when ctx
// ends: state kept in memory and written now and then.
func saveEvery(ctx context.Context, interval time.Duration, saves map[string]func() error, log *slog.Logger) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
		for what, save := range saves {
			if err := save(); err != nil {
				log.Error("saving "+what, "err", err)
			}
		}
	}
}

// tlsState opens what outbound TLS keeps in the state directory: what
// each destination's servers offered, and, with TLS reporting, the
// results to report and the reports received.
func tlsState(cfg *config.Config, log *slog.Logger) (*deliver.Destinations, *tlsrpt.Store, *tlsrpt.Inbox, error) {
	dests, err := deliver.OpenDestinations(cfg.State.Destinations(), 0)
	if err != nil || !cfg.TLSRPT.Enabled {
		return dests, nil, nil, err
	}
	reports, err := tlsrpt.OpenStore(cfg.State.TLSReports(), nil, log.With("job", "tlsrpt"))
	if err != nil {
		return nil, nil, nil, err
	}
	inbox, err := tlsrpt.OpenInbox(cfg.State.TLSReportInbox())
	if err != nil {
		return nil, nil, nil, err
	}
	log.Info("TLS reporting: publish the record for the reports sent to us", "name", tlsrpt.RecordName(cfg.Domain),
		"record", tlsrpt.OwnRecord(cfg.TLSRPT.ReportAddress(cfg.Domain)))
	return dests, reports, inbox, nil
}

// defaultPostmaster is where postmaster@ goes when neither -postmaster
// nor the database says: the first user that can log in.
func defaultPostmaster(cfg *config.Config, db *userdb.DB, log *slog.Logger) string {
	if cfg.Receive.Postmaster != "" {
		return ""
	}
	for _, u := range db.Users() {
		if u.CanLogin() {
			log.Info("postmaster@ mail goes to the first user that can log in", "postmaster", u.Address)
			return u.Address
		}
	}
	log.Warn("no postmaster: set -postmaster or add a user named postmaster")
	return ""
}

// reload reloads the user database on SIGHUP and, every interval (if
// positive), when it changed, until ctx ends.
func reload(ctx context.Context, loader *userdb.Loader, keys *mailauth.Keys, interval time.Duration, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading the user database and the DKIM keys")
				loader.Load()
				if err := keys.Reload(); err != nil {
					log.Error("cannot reload the DKIM keys; the ones in use stay", "err", err)
				}
			}
		}
	}()
	if interval > 0 {
		go loader.Watch(ctx, interval)
	}
}

// dkimKeys loads the DKIM keys and, when signing, makes -domain's on the
// first start (rsa, and ed25519 with -dkim-ed25519), logging the records
// to publish.
func dkimKeys(cfg *config.Config, log *slog.Logger) (*mailauth.Keys, error) {
	keys, err := mailauth.LoadKeys(cfg.State.DKIM())
	if err != nil {
		return nil, err
	}
	if !cfg.MailAuth.Sign && !cfg.MailAuth.ARC {
		return keys, nil
	}
	algos := []string{"rsa"}
	if cfg.MailAuth.Ed25519 {
		algos = append(algos, "ed25519")
	}
	made, err := keys.Ensure(cfg.Domain, algos, time.Now())
	for _, k := range made {
		log.Warn("made a DKIM key: publish its record", "name", k.RecordName(), "record", k.Record)
	}
	return keys, err
}

// resolverName is the DNS server delivery asks, for the log.
func resolverName(cfg *config.Config) string {
	if cfg.Delivery.Resolver != "" {
		return cfg.Delivery.Resolver
	}
	return config.ResolvConf
}

// listener is an SMTP listener open.
type listener struct {
	l    net.Listener
	mode receive.Mode
}

// listen opens the SMTP listeners, all or none.
func listen(addrs []config.Listener) ([]listener, error) {
	var ls []listener
	for _, a := range addrs {
		l, err := net.Listen("tcp", a.Addr)
		if err != nil {
			closeAll(ls)
			return nil, fmt.Errorf("%v: %w", a.Mode, err)
		}
		ls = append(ls, listener{l, a.Mode})
	}
	return ls, nil
}

func closeAll(ls []listener) {
	for _, l := range ls {
		l.l.Close()
	}
}
