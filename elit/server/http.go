package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"elit.local/elit/certs"
	"elit.local/elit/config"
	"elit.local/elit/metrics"
	"elit.local/elit/mtasts"
	"elit.local/elit/status"
)

// tlsConfig is the TLS configuration of the SMTP listeners.
func tlsConfig(src *certs.Source) *tls.Config {
	return &tls.Config{
		GetCertificate: src.GetCertificate,
		MinVersion:     tls.VersionTLS12,
	}
}

// serveHTTP starts the HTTP servers the configuration asks for: metrics,
// the status page st (its password read here; HTTPS with the server's
// certificate unless -http-tls=false), and the ACME challenges
// (and the first ACME certificate's retrieval); they stop when ctx ends.
func serveHTTP(ctx context.Context, cfg *config.Config, src *certs.Source, st *status.Server, log *slog.Logger) error {
	if addr := cfg.HTTP.MetricsAddr; addr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Default)
		a, err := listenHTTP(ctx, addr, mux, nil)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		log.Info("metrics listening", "addr", a.String())
	}
	if addr := cfg.HTTP.StatusAddr; addr != "" {
		pw, err := status.ReadPassword(cfg.HTTP.PasswordFiles())
		if err != nil {
			return config.Errorf("-http-addr: %w", err)
		}
		st.Password, st.PlainDBPush = pw, cfg.HTTP.PlainDBPush
		// The private endpoints go over TLS with the server's
		// certificate: elit-image pins its key.
		var tc *tls.Config
		scheme := "http"
		if cfg.HTTP.TLS {
			tc, scheme = tlsConfig(src), "https"
		}
		a, err := listenHTTP(ctx, addr, st.Handler(), tc)
		if err != nil {
			return fmt.Errorf("status page: %w", err)
		}
		st.Log.Info("status page listening", "addr", a.String(), "url", scheme+"://"+a.String()+"/")
	}
	if acme := cfg.TLS.ACME; acme.Enabled {
		if acme.HTTPAddr != "" {
			if _, err := listenHTTP(ctx, acme.HTTPAddr, src.HTTPHandler(), nil); err != nil {
				return fmt.Errorf("ACME HTTP-01: %w", err)
			}
		}
		if acme.TLSAddr != "" {
			l, err := net.Listen("tcp", acme.TLSAddr)
			if err != nil {
				return fmt.Errorf("ACME TLS-ALPN-01: %w", err)
			}
			// Port 443: the challenges and, for our domains, the
			// MTA-STS policy (RFC 8461 §3.3).
			var h http.Handler
			if pol := cfg.PublishedSTS(); pol != nil {
				h = mtasts.Handler(*pol, append([]string{cfg.Domain}, cfg.Domains...)...)
				log.Info("serving the MTA-STS policy", "addr", l.Addr().String(), "hosts", cfg.STSHosts(), "mode", pol.Mode, "id", pol.ID())
			}
			go src.ServeHTTPS(ctx, l, h)
		}
		go src.Obtain(ctx)
	}
	return nil
}

// listenHTTP serves h on addr until ctx ends, over TLS with tc when it is
// not nil.
func listenHTTP(ctx context.Context, addr string, h http.Handler, tc *tls.Config) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc != nil {
		l = tls.NewListener(l, tc)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute}
	go hs.Serve(l)
	go func() {
		<-ctx.Done()
		hs.Close()
	}()
	return l.Addr(), nil
}
