package policy

import (
	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/config"
)

// Load reads the configuration at path (the built-in one when path is ""),
// the catalog and the app-definition files it names, and compiles the
// policy. fetch opens remote sources and may be nil.
func Load(path string, fetch blocklists.Fetcher) (*Policy, error) {
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return nil, err
		}
	}
	set, err := blocklists.Load(blocklists.Options{Globs: cfg.Blocking.Lists, Fetcher: fetch})
	if err != nil {
		return nil, err
	}
	p, err := Build(cfg, set)
	if err != nil {
		return nil, err
	}
	p.Warnings = append(set.Warnings, p.Warnings...)
	return p, nil
}
