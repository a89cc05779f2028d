package config

import (
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"strings"
)

// masked stands for a secret in the log.
const masked = "(secret)"

// LogValue is the effective configuration for the log: every setting by
// its flag name, then the domains, transports and routes of the file,
// with secrets masked (any setting or field named like a password or a
// secret).
func (c *Config) LogValue() slog.Value {
	cp := *c
	var attrs []slog.Attr
	cp.FlagSet("", io.Discard).VisitAll(func(f *flag.Flag) {
		v := f.Value.String()
		if secret(f.Name) && v != "" {
			v = masked
		}
		attrs = append(attrs, slog.String(f.Name, v))
	})
	attrs = append(attrs, slog.Any("domains", c.Domains),
		slog.String("transports", maskedJSON(c.Delivery.Transports)),
		slog.String("routes", maskedJSON(c.Delivery.Routes)))
	if c.Version != "" {
		attrs = append(attrs, slog.String("version", c.Version))
	}
	return slog.GroupValue(attrs...)
}

// secret says whether a setting or field of this name holds a secret (a
// file holding one is not).
func secret(name string) bool {
	n := strings.ToLower(name)
	return (strings.Contains(n, "password") || strings.Contains(n, "secret")) && !strings.HasSuffix(n, "file")
}

// maskedJSON is v as JSON with the values of secret fields masked.
func maskedJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		return err.Error()
	}
	b, _ = json.Marshal(mask(x))
	return string(b)
}

func mask(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && secret(k) && s != "" {
				v[k] = masked
			} else {
				v[k] = mask(x)
			}
		}
	case []any:
		for i, x := range v {
			v[i] = mask(x)
		}
	}
	return v
}
