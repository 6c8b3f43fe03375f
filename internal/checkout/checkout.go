// Package checkout finds the Node programs amirotate runs beside its Go
// code (the local Step Functions runner, the IAM evaluator) in the source
// checkout.
package checkout

import (
	"fmt"
	"os"
	"path/filepath"
)

// HomeEnv names the checkout when a binary runs from somewhere else.
const HomeEnv = "AMIROTATE_HOME"

// Find returns the directory rel (statemachine/local, say) that holds file:
// under $AMIROTATE_HOME, else the first found walking up from the working
// directory, else from the executable's directory.
func Find(rel, file string) (string, error) {
	if home := os.Getenv(HomeEnv); home != "" {
		dir := filepath.Join(home, rel)
		if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
			return "", fmt.Errorf("%s=%s has no %s", HomeEnv, home, filepath.Join(rel, file))
		}
		return dir, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, start := range starts {
		for d := start; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, rel, file)); err == nil {
				return filepath.Join(d, rel), nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", fmt.Errorf("cannot find %s above the working directory or the executable; run from the amirotate checkout or set %s to it",
		filepath.Join(rel, file), HomeEnv)
}

// Node is the Node.js the checkout's programs run on: the LTS `make setup`
// installs from npm (node_modules/.bin/node, the npm package node), else
// node on PATH.
func Node() string {
	if dir, err := Find(filepath.Join("node_modules", ".bin"), "node"); err == nil {
		return filepath.Join(dir, "node")
	}
	return "node"
}
