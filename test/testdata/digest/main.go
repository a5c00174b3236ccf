// Digest is the sample of an intercept with traffic none (`kloop intercept
// orders --traffic none --program .`): a program with no port of its own,
// like a batch job or a queue consumer, that works from the orders pod's
// env (GREETING, API_TOKEN, POD_NAMESPACE), the catalog the pod mounts
// (CATALOG_FILE, read under $KLOOP_ROOT) and the users Service, reached by
// name through the outbound proxy kloop sets in HTTP_PROXY.
//
// It prints one line, "digest " and JSON, then waits to be stopped. DIGEST_HOSTS
// lists the HOST:PORT of the users Service to ask for user 1, by any of its
// names, and addresses that must fail; each answer or error is in the line.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const build = "digest-v1"

type digest struct {
	Build    string            `json:"build"`
	Greeting string            `json:"greeting"`
	TokenSHA string            `json:"tokenSHA"`
	Root     string            `json:"root"`
	Items    int               `json:"items"`
	Users    map[string]string `json:"users"`
}

func main() {
	d := digest{Build: build, Greeting: os.Getenv("GREETING"), Root: os.Getenv("KLOOP_ROOT"), Users: map[string]string{}}
	sum := sha256.Sum256([]byte(os.Getenv("API_TOKEN")))
	d.TokenSHA = hex.EncodeToString(sum[:6])
	if data, err := os.ReadFile(filepath.Join(d.Root, os.Getenv("CATALOG_FILE"))); err == nil {
		var items []map[string]string
		if json.Unmarshal(data, &items) == nil {
			d.Items = len(items)
		}
	} else {
		d.Items = -1
	}
	client := &http.Client{Timeout: time.Minute}
	ns := os.Getenv("POD_NAMESPACE")
	for _, host := range strings.Fields(os.Getenv("DIGEST_HOSTS")) {
		host = strings.ReplaceAll(host, "NS", ns)
		d.Users[host] = get(client, "http://"+host+"/users/1")
	}
	line, _ := json.Marshal(d)
	fmt.Printf("digest %s\n", line)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
}

// get answers "200 BODY" or the status and body of a failure, or the error.
func get(c *http.Client, url string) string {
	resp, err := c.Get(url)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
}
