package rotation

import (
	"strings"
	"testing"
)

func TestScripts_PresetsExpand(t *testing.T) {
	p, err := DecodePolicy([]byte(`{"name":"db","retention":{"keep":3},
		"scripts":{"preset":"linux-fsfreeze","mountPoints":["/data","/var/lib/mysql"],"pre":{"timeoutSeconds":45,"retries":1}}}`))
	if err != nil {
		t.Fatal(err)
	}
	s := p.WithDefaults().Scripts
	if s.OnPreFailure != OnPreFailureSkip || s.Pre.TimeoutSeconds != 45 || s.Pre.Retries != 1 || s.Post.TimeoutSeconds != DefaultScriptTimeoutSeconds {
		t.Fatalf("defaults: %+v pre %+v post %+v", s, s.Pre, s.Post)
	}
	doc, params := s.PreCommand()
	cmds := strings.Join(params["commands"], "\n")
	if doc != DocumentRunShellScript || params["executionTimeout"][0] != "45" ||
		!strings.Contains(cmds, `fsfreeze -f "$m"`) || !strings.Contains(cmds, "sleep 45") || !strings.Contains(cmds, "'/var/lib/mysql'") {
		t.Fatalf("pre: %s %v", doc, params)
	}
	doc, params = s.PostCommand()
	if doc != DocumentRunShellScript || !strings.Contains(strings.Join(params["commands"], "\n"), `fsfreeze -u "$m"`) {
		t.Fatalf("post: %s %v", doc, params)
	}
	w, _ := DecodePolicy([]byte(`{"name":"win","retention":{"keep":3},"scripts":{"preset":"windows-vss","onPreFailure":"crash-consistent"}}`))
	pre, pp := w.WithDefaults().Scripts.PreCommand()
	post, qp := w.WithDefaults().Scripts.PostCommand()
	if pre != DocumentManageVssIO || pp["Action"][0] != "Freeze" || post != DocumentManageVssIO || qp["Action"][0] != "Thaw" {
		t.Fatalf("vss: %s %v / %s %v", pre, pp, post, qp)
	}
	if got := w.WithDefaults().Scripts.Documents(); len(got) != 1 || got[0] != DocumentManageVssIO {
		t.Fatalf("documents %v", got)
	}
}

func TestScripts_Rejects(t *testing.T) {
	cases := map[string]struct{ scripts, want string }{
		"root frozen":         {`{"preset":"linux-fsfreeze","mountPoints":["/"]}`, "holds the SSM Agent's files"},
		"var frozen":          {`{"preset":"linux-fsfreeze","mountPoints":["/var"]}`, "holds the SSM Agent's files"},
		"no mount points":     {`{"preset":"linux-fsfreeze"}`, "mountPoints: is empty"},
		"relative path":       {`{"preset":"linux-fsfreeze","mountPoints":["data"]}`, "not an absolute mount point"},
		"shell in path":       {`{"preset":"linux-fsfreeze","mountPoints":["/data;reboot"]}`, "not an absolute mount point"},
		"unknown preset":      {`{"preset":"zfs"}`, `"zfs" is not a preset`},
		"pre without post":    {`{"pre":{"document":"FlushTables"}}`, "post.document: is missing"},
		"no documents":        {`{}`, "pre.document: is missing"},
		"preset and document": {`{"preset":"windows-vss","pre":{"document":"X-Y-Z"}}`, "use one or the other"},
		"bad failure setting": {`{"preset":"windows-vss","onPreFailure":"ignore"}`, `"ignore": use "skip"`},
		"timeout too short":   {`{"preset":"windows-vss","post":{"timeoutSeconds":5}}`, "post.timeoutSeconds: is 5"},
		"too many retries":    {`{"preset":"windows-vss","pre":{"retries":9}}`, "pre.retries: is 9"},
		"bad document name":   {`{"pre":{"document":"a b"},"post":{"document":"ok-doc"}}`, "not an SSM document name"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := DecodePolicy([]byte(`{"name":"db","retention":{"keep":3},"scripts":` + c.scripts + `}`))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
	_, err := DecodePolicy([]byte(`{"name":"db","retention":{"keep":3},"noReboot":false,"scripts":{"preset":"windows-vss"}}`))
	if err == nil || !strings.Contains(err.Error(), "needs noReboot: true") {
		t.Fatalf("reboot with scripts: %v", err)
	}
}
