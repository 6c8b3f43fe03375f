package ec2sim

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
)

// testdata/ec2-output-shapes.json holds, for every implemented EC2 action,
// the tree of XML element names its response may contain, taken from the
// botocore EC2 service model (2016-11-15; locationName of each output
// member, lists as <name><item>…). Every EC2 response served in these tests
// is checked against it, so a misspelt element (which the SDKs would
// silently ignore) fails the test that produced it. One addition to the
// model: actions without output members (CreateTags, DeleteTags,
// DeleteSnapshot, Modify*Attribute) may carry <return>true</return>, as the
// EC2 API reference's examples show.

type shapeTree map[string]shapeTree

var (
	shapesOnce sync.Once
	shapes     map[string]shapeTree
	shapesErr  error
)

func loadShapes() (map[string]shapeTree, error) {
	shapesOnce.Do(func() {
		b, err := os.ReadFile("testdata/ec2-output-shapes.json")
		if err != nil {
			shapesErr = err
			return
		}
		shapesErr = json.Unmarshal(b, &shapes)
	})
	return shapes, shapesErr
}

// checkShapes wraps h so that every EC2 success response is validated.
func checkShapes(t *testing.T, h http.Handler) http.Handler {
	all, err := loadShapes()
	if err != nil {
		t.Fatalf("loading output shapes: %v", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		body := rec.Body.Bytes()
		_, _ = w.Write(body)
		if rec.Code == http.StatusOK && bytes.Contains(body, []byte(ec2Namespace)) {
			if err := validateEC2Response(all, body); err != nil {
				t.Errorf("response does not match the EC2 model: %v\n%s", err, body)
			}
		}
	})
}

func validateEC2Response(all map[string]shapeTree, body []byte) error {
	dec := xml.NewDecoder(bytes.NewReader(body))
	var stack []shapeTree
	var path []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch el := tok.(type) {
		case xml.StartElement:
			name := el.Name.Local
			if len(stack) == 0 {
				action, ok := strings.CutSuffix(name, "Response")
				tree, known := all[action]
				if !ok || !known {
					return &shapeError{path: name, msg: "unknown response root"}
				}
				if len(tree) == 1 {
					tree = shapeTree{"requestId": {}, "return": {}}
				}
				stack, path = append(stack, tree), append(path, name)
				continue
			}
			parent := stack[len(stack)-1]
			child, ok := parent[name]
			if !ok {
				return &shapeError{path: strings.Join(append(path, name), "/"), msg: "element not in the model"}
			}
			stack, path = append(stack, child), append(path, name)
		case xml.EndElement:
			stack, path = stack[:len(stack)-1], path[:len(path)-1]
		}
	}
}

type shapeError struct{ path, msg string }

func (e *shapeError) Error() string { return e.path + ": " + e.msg }
