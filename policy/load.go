package policy

import (
	"slices"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/config"
)

// Load reads the configuration at path (the built-in one when path is ""),
// the catalog and the app-definition files it names, and compiles the
// policy. fetch opens remote sources and may be nil.
func Load(path string, fetch blocklists.Fetcher) (*Policy, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return Compile(cfg, fetch)
}

// LoadConfig reads the configuration at path, or returns the built-in one
// when path is "".
func LoadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

// Compile reads the catalog and the app-definition files cfg names and
// builds the policy. fetch opens remote sources and may be nil (they are
// then reported as not loaded). The warnings of the lists come first in
// Policy.Warnings.
func Compile(cfg *config.Config, fetch blocklists.Fetcher) (*Policy, error) {
	set, err := blocklists.Load(blocklists.Options{Globs: cfg.Blocking.Lists, Fetcher: fetch})
	if err != nil {
		return nil, err
	}
	p, err := Build(cfg, set)
	if err != nil {
		return nil, err
	}
	p.Warnings = slices.Concat(set.Warnings, p.Warnings)
	return p, nil
}
