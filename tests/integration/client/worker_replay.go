// worker_replay plays travis-ci/worker's cloudbrain backend against a cloudbrain service, with
// the same Go net/http calls that backend makes (backend/cloudbrain_client.go and
// backend/cloudbrain.go): the token in the endpoint URL's user info (so Go sends HTTP Basic
// with user "token"), http.DefaultClient, a POST of a json.Marshal'ed body through a
// bytes.Reader and no Content-Type, a transport error retried with exponential backoff (10 s
// at most between tries, a minute in all) re-sending the same *http.Request, an exact status
// expected (201 for create, 200 for get and delete), the body decoded into the backend's
// struct, and the boot poll: a first sleep, then a GET every few seconds until "running" or
// "errored". Stop, as the backend does it, only GETs the instance; the abandoned-start path
// DELETEs it and ignores the outcome.
//
// It prints one JSON object per step on stdout and exits 0 once the whole scenario ran, even
// where the worker would have seen an error: the test reads what each step saw.
//
//	go run worker_replay.go -endpoint http://token:SECRET@127.0.0.1:8080/ -provider gce \
//	    -image image-2016-01-01 -vm-type default [-pre-poll 15s] [-poll 3s] [-timeout 4m] \
//	    [-max-elapsed 1m] [-create-only]
//
// Standard library only (the backend's backoff package is replaced by the same schedule).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"time"
)

// The backend's view of an instance: what it decodes and nothing more.
type cbInstanceData struct {
	ID          string `json:"id"`
	Image       string `json:"image"`
	IPAddress   string `json:"ip_address"`
	Provider    string `json:"provider"`
	State       string `json:"state"`
	UpstreamID  string `json:"upstream_id"`
	ErrorReason string `json:"error_reason"`
}

// What the backend sends: every field, empty ones included.
type cbInstanceRequest struct {
	Provider     string `json:"provider"`
	Image        string `json:"image"`
	InstanceType string `json:"instance_type"`
	PublicSSHKey string `json:"public_ssh_key"`
}

type cbClient struct {
	baseURL    *url.URL
	httpClient *http.Client
	attempts   int // requests sent, retries included, for the report
}

func (c *cbClient) Create(r *cbInstanceRequest) (*cbInstanceData, error) {
	u, err := c.baseURL.Parse("instances")
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest("POST", u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	return c.httpRequest(req, 201)
}

func (c *cbClient) Get(id string) (*cbInstanceData, error) {
	u, err := c.baseURL.Parse(fmt.Sprintf("instances/%s", url.QueryEscape(id)))
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest("GET", u.String(), nil)
	if err != nil {
		return nil, err
	}
	return c.httpRequest(req, 200)
}

func (c *cbClient) Delete(id string) (*cbInstanceData, error) {
	u, err := c.baseURL.Parse(fmt.Sprintf("instances/%s", url.QueryEscape(id)))
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest("DELETE", u.String(), nil)
	if err != nil {
		return nil, err
	}
	return c.httpRequest(req, 200)
}

// How long the backoff keeps trying; the backend's is a minute (-max-elapsed shortens it).
var maxElapsed = time.Minute

// The schedule of github.com/cenkalti/backoff's ExponentialBackOff as the backend sets it up:
// 500 ms first, ×1.5 each time, ±50% jitter, at most 10 s apart, given up after a minute.
func retry(op func() error) error {
	interval := 500 * time.Millisecond
	start := time.Now()
	for {
		err := op()
		if err == nil {
			return nil
		}
		if time.Since(start) > maxElapsed {
			return err
		}
		delta := 0.5 * float64(interval)
		wait := time.Duration(float64(interval) - delta + rand.Float64()*(2*delta+1))
		time.Sleep(wait)
		interval = time.Duration(float64(interval) * 1.5)
		if interval > 10*time.Second {
			interval = 10 * time.Second
		}
	}
}

func (c *cbClient) httpRequest(req *http.Request, expectedStatus int) (*cbInstanceData, error) {
	var resp *http.Response
	err := retry(func() (err error) {
		c.attempts++
		resp, err = c.httpClient.Do(req)
		return
	})
	if err != nil {
		return nil, fmt.Errorf("error sending request: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != expectedStatus {
		body := new(bytes.Buffer)
		body.ReadFrom(resp.Body)
		return nil, fmt.Errorf("expected %v response code, got status=%v body=%v",
			expectedStatus, resp.StatusCode, body.String())
	}
	instance := &cbInstanceData{}
	if err := json.NewDecoder(resp.Body).Decode(instance); err != nil {
		return nil, fmt.Errorf("couldn't decode json response: %w", err)
	}
	return instance, nil
}

type step struct {
	Step     string          `json:"step"`
	Error    string          `json:"error,omitempty"`
	Instance *cbInstanceData `json:"instance,omitempty"`
	Polls    int             `json:"polls,omitempty"`
	Attempts int             `json:"attempts"`
	Seconds  float64         `json:"seconds"`
}

func report(s step, started time.Time) {
	s.Seconds = time.Since(started).Seconds()
	line, _ := json.Marshal(s)
	fmt.Println(string(line))
}

// The boot poll of stepWaitForInstanceIP: sleep, then GET until running or errored.
func waitForState(c *cbClient, id string, prePoll, poll, timeout time.Duration,
	done func(string) bool) (*cbInstanceData, int, error) {
	time.Sleep(prePoll)
	deadline := time.Now().Add(timeout)
	for polls := 1; ; polls++ {
		instance, err := c.Get(id)
		if err != nil {
			return nil, polls, err
		}
		if done(instance.State) {
			return instance, polls, nil
		}
		if time.Now().After(deadline) {
			return instance, polls, errors.New("timed out in state " + instance.State)
		}
		time.Sleep(poll)
	}
}

func main() {
	endpoint := flag.String("endpoint", "", "cloudbrain URL with the token as user info")
	provider := flag.String("provider", "gce", "provider name")
	image := flag.String("image", "image-2016-01-01", "image")
	vmType := flag.String("vm-type", "default", "the job's vm_type, sent as instance_type")
	prePoll := flag.Duration("pre-poll", 15*time.Second, "BOOT_PRE_POLL_SLEEP")
	poll := flag.Duration("poll", 3*time.Second, "BOOT_POLL_SLEEP")
	timeout := flag.Duration("timeout", 4*time.Minute, "how long to poll (the startup timeout)")
	createOnly := flag.Bool("create-only", false, "stop after the create call")
	flag.DurationVar(&maxElapsed, "max-elapsed", time.Minute, "how long a request is retried")
	flag.Parse()

	base, err := url.Parse(*endpoint)
	if err != nil || *endpoint == "" {
		fmt.Fprintln(os.Stderr, "worker_replay: -endpoint must be a URL")
		os.Exit(2)
	}
	c := &cbClient{baseURL: base, httpClient: http.DefaultClient}
	started := time.Now()

	// stepInsertInstance
	created, err := c.Create(&cbInstanceRequest{Provider: *provider, Image: *image,
		InstanceType: *vmType})
	s := step{Step: "create", Instance: created, Attempts: c.attempts}
	if err != nil {
		s.Error = err.Error()
	}
	report(s, started)
	if err != nil || *createOnly {
		return
	}

	// stepWaitForInstanceIP
	c.attempts = 0
	booted, polls, err := waitForState(c, created.ID, *prePoll, *poll, *timeout,
		func(state string) bool { return state == "running" || state == "errored" })
	s = step{Step: "boot", Instance: booted, Polls: polls, Attempts: c.attempts}
	if err != nil {
		s.Error = err.Error()
	}
	report(s, started)
	if err != nil {
		return
	}

	// Stop: stepDeleteInstance, which only reads the instance.
	c.attempts = 0
	stopped, err := c.Get(created.ID)
	s = step{Step: "stop", Instance: stopped, Attempts: c.attempts}
	if err != nil {
		s.Error = err.Error()
	}
	report(s, started)

	// The abandoned-start path: Delete, whose outcome the backend ignores.
	c.attempts = 0
	deleted, err := c.Delete(created.ID)
	s = step{Step: "delete", Instance: deleted, Attempts: c.attempts}
	if err != nil {
		s.Error = err.Error()
	}
	report(s, started)

	// Not the backend's: the replay watches the instance go, to show the delete took effect.
	c.attempts = 0
	gone, polls, err := waitForState(c, created.ID, 0, *poll, *timeout,
		func(state string) bool { return state == "terminated" })
	s = step{Step: "terminated", Instance: gone, Polls: polls, Attempts: c.attempts}
	if err != nil {
		s.Error = err.Error()
	}
	report(s, started)
}
