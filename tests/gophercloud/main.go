// SPDX-License-Identifier: Apache-2.0

// Command sov-gophercloud drives sov-api through gophercloud, the Go SDK that Terraform's
// OpenStack provider is built on, using only SDK calls (no hand-made requests). It is a test
// client, not part of sovcloud: tests/integration/test_api_gophercloud.py builds and runs it.
//
// Build offline with Debian's packages (golang-go, golang-github-gophercloud-gophercloud-dev,
// golang-golang-x-crypto-dev), in GOPATH mode:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$tmp/cache go build -o $tmp/sov-gophercloud .
//
// Usage: sov-gophercloud STEP... with STEP one of token, projects, flavors, keypair, image,
// network, volume, server. Credentials come from OS_AUTH_URL, OS_USERNAME, OS_PASSWORD,
// OS_PROJECT_NAME and OS_USER_DOMAIN_NAME (openstack.AuthOptionsFromEnv; gophercloud 0.12 reads
// the domain from OS_DOMAIN_NAME, so OS_USER_DOMAIN_NAME is copied there when that is unset),
// OS_REGION_NAME picks the catalog region. Each step prints one JSON line
// {"step": NAME, "ok": true, ...facts}; the first failure prints {"step", "ok": false, "error"}
// and exits 1. Failing to authenticate prints step "auth". Every resource a step creates is
// named "gc-<step>-<pid>" and deleted before the step ends, also when it fails.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/ioutil"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud"
	"github.com/gophercloud/gophercloud/openstack"
	"github.com/gophercloud/gophercloud/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/openstack/compute/v2/extensions/keypairs"
	"github.com/gophercloud/gophercloud/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/openstack/imageservice/v2/imagedata"
	"github.com/gophercloud/gophercloud/openstack/imageservice/v2/images"
	"github.com/gophercloud/gophercloud/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/openstack/networking/v2/subnets"
	"golang.org/x/crypto/ssh"
)

// facts is what a step reports besides its name and outcome.
type facts map[string]interface{}

// env holds the authenticated provider and the endpoint options every service client uses.
type env struct {
	provider *gophercloud.ProviderClient
	eo       gophercloud.EndpointOpts
	suffix   string // makes this run's resource names unique
}

// cleanups run in reverse order when a step returns, whether it succeeded or not.
type cleanups []func()

func (c *cleanups) add(f func()) { *c = append(*c, f) }

// run has a pointer receiver: `defer cl.run()` must see what was added after the defer.
func (c *cleanups) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
}

func printLine(v facts) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"ok":false,"error":%q}`, err.Error()))
	}
	fmt.Println(string(b))
}

func fail(step string, err error) {
	printLine(facts{"step": step, "ok": false, "error": describe(err)})
	os.Exit(1)
}

// describe adds the status and body of an unexpected HTTP answer to an error's text.
func describe(err error) string {
	var code gophercloud.ErrUnexpectedResponseCode
	switch e := err.(type) {
	case gophercloud.ErrUnexpectedResponseCode:
		code = e
	case gophercloud.ErrDefault400:
		code = e.ErrUnexpectedResponseCode
	case gophercloud.ErrDefault401:
		code = e.ErrUnexpectedResponseCode
	case gophercloud.ErrDefault403:
		code = e.ErrUnexpectedResponseCode
	case gophercloud.ErrDefault404:
		code = e.ErrUnexpectedResponseCode
	case gophercloud.ErrDefault405:
		code = e.ErrUnexpectedResponseCode
	case gophercloud.ErrDefault408:
		code = e.ErrUnexpectedResponseCode
	case gophercloud.ErrDefault409:
		code = e.ErrUnexpectedResponseCode
	case gophercloud.ErrDefault429:
		code = e.ErrUnexpectedResponseCode
	case gophercloud.ErrDefault500:
		code = e.ErrUnexpectedResponseCode
	case gophercloud.ErrDefault503:
		code = e.ErrUnexpectedResponseCode
	default:
		return err.Error()
	}
	return fmt.Sprintf("%s %s: HTTP %d (expected %v): %s", code.Method, code.URL, code.Actual,
		code.Expected, strings.TrimSpace(string(code.Body)))
}

// is404 tells whether err is gophercloud's answer to HTTP 404.
func is404(err error) bool {
	var nf gophercloud.ErrDefault404
	return errors.As(err, &nf)
}

// expectGone checks that a resource reads back as 404 after its deletion.
func expectGone(what string, get func() error) error {
	err := get()
	if err == nil {
		return fmt.Errorf("%s still readable after its deletion", what)
	}
	if !is404(err) {
		return fmt.Errorf("%s after deletion: want 404, got %s", what, describe(err))
	}
	return nil
}

// waitGone polls until get answers 404 (deletions that complete asynchronously).
func waitGone(what string, secs int, get func() error) error {
	return gophercloud.WaitFor(secs, func() (bool, error) {
		err := get()
		if err == nil {
			return false, nil
		}
		if is404(err) {
			return true, nil
		}
		return false, fmt.Errorf("%s: %s", what, describe(err))
	})
}

func authenticate() (*env, error) {
	if os.Getenv("OS_DOMAIN_NAME") == "" && os.Getenv("OS_DOMAIN_ID") == "" {
		if d := os.Getenv("OS_USER_DOMAIN_NAME"); d != "" {
			os.Setenv("OS_DOMAIN_NAME", d)
		}
	}
	opts, err := openstack.AuthOptionsFromEnv()
	if err != nil {
		return nil, err
	}
	provider, err := openstack.NewClient(opts.IdentityEndpoint)
	if err != nil {
		return nil, err
	}
	// Bounded: a server that hangs fails the step instead of the test's timeout.
	provider.HTTPClient = http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 4,
		},
	}
	if err := openstack.Authenticate(provider, opts); err != nil {
		return nil, err
	}
	return &env{
		provider: provider,
		eo: gophercloud.EndpointOpts{Region: os.Getenv("OS_REGION_NAME"),
			Availability: gophercloud.AvailabilityPublic},
		suffix: fmt.Sprintf("%d", os.Getpid()),
	}, nil
}

func (e *env) name(step string) string { return "gc-" + step + "-" + e.suffix }

// ---- identity ----

func stepToken(e *env) (facts, error) {
	client, err := openstack.NewIdentityV3(e.provider, e.eo)
	if err != nil {
		return nil, err
	}
	tok := e.provider.Token()
	res := tokens.Get(client, tok)
	t, err := res.ExtractToken()
	if err != nil {
		return nil, err
	}
	if !t.ExpiresAt.After(time.Now()) {
		return nil, fmt.Errorf("token expires at %s, in the past", t.ExpiresAt)
	}
	user, err := res.ExtractUser()
	if err != nil {
		return nil, err
	}
	project, err := res.ExtractProject()
	if err != nil {
		return nil, err
	}
	if project == nil {
		return nil, errors.New("token is not project-scoped")
	}
	roles, err := res.ExtractRoles()
	if err != nil {
		return nil, err
	}
	catalog, err := res.ExtractServiceCatalog()
	if err != nil {
		return nil, err
	}
	ok, err := tokens.Validate(client, tok)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("tokens.Validate says the token is not valid")
	}
	var roleNames, services []string
	for _, r := range roles {
		roleNames = append(roleNames, r.Name)
	}
	for _, s := range catalog.Entries {
		services = append(services, s.Type)
	}
	sort.Strings(roleNames)
	sort.Strings(services)
	return facts{"user": user.Name, "project": project.Name, "roles": roleNames,
		"services": services, "expires_at": t.ExpiresAt.Format(time.RFC3339)}, nil
}

func stepProjects(e *env) (facts, error) {
	client, err := openstack.NewIdentityV3(e.provider, e.eo)
	if err != nil {
		return nil, err
	}
	pages, err := projects.List(client, projects.ListOpts{}).AllPages()
	if err != nil {
		return nil, err
	}
	list, err := projects.ExtractProjects(pages)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, p := range list {
		if p.ID == "" {
			return nil, fmt.Errorf("project %q has no id", p.Name)
		}
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return facts{"projects": names}, nil
}

// ---- compute ----

func (e *env) compute() (*gophercloud.ServiceClient, error) {
	return openstack.NewComputeV2(e.provider, e.eo)
}

func findFlavor(client *gophercloud.ServiceClient, name string) (*flavors.Flavor, []string, error) {
	pages, err := flavors.ListDetail(client, flavors.ListOpts{}).AllPages()
	if err != nil {
		return nil, nil, err
	}
	list, err := flavors.ExtractFlavors(pages)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	var found *flavors.Flavor
	for i := range list {
		names = append(names, list[i].Name)
		if list[i].Name == name {
			found = &list[i]
		}
	}
	sort.Strings(names)
	if found == nil {
		return nil, names, fmt.Errorf("no flavor %s among %v", name, names)
	}
	return found, names, nil
}

func stepFlavors(e *env) (facts, error) {
	client, err := e.compute()
	if err != nil {
		return nil, err
	}
	f, names, err := findFlavor(client, "t3.micro")
	if err != nil {
		return nil, err
	}
	got, err := flavors.Get(client, f.ID).Extract()
	if err != nil {
		return nil, err
	}
	if got.Name != f.Name || got.RAM != f.RAM || got.VCPUs != f.VCPUs || got.Disk != f.Disk {
		return nil, fmt.Errorf("flavors.Get %+v differs from the listed %+v", got, f)
	}
	return facts{"flavors": names, "t3.micro": facts{"id": f.ID, "vcpus": f.VCPUs,
		"ram": f.RAM, "disk": f.Disk}}, nil
}

// keypairRoundTrip gets a created key pair back, compares it and deletes it.
func keypairRoundTrip(client *gophercloud.ServiceClient, kp *keypairs.KeyPair) error {
	got, err := keypairs.Get(client, kp.Name).Extract()
	if err != nil {
		return err
	}
	if got.Name != kp.Name || got.Fingerprint != kp.Fingerprint ||
		strings.TrimSpace(got.PublicKey) != strings.TrimSpace(kp.PublicKey) {
		return fmt.Errorf("keypairs.Get %+v differs from the created %+v", got, kp)
	}
	if got.PrivateKey != "" {
		return fmt.Errorf("keypairs.Get of %s returns a private key", kp.Name)
	}
	if err := keypairs.Delete(client, kp.Name).ExtractErr(); err != nil {
		return err
	}
	return expectGone("key pair "+kp.Name, func() error {
		_, err := keypairs.Get(client, kp.Name).Extract()
		return err
	})
}

func stepKeypair(e *env) (facts, error) {
	client, err := e.compute()
	if err != nil {
		return nil, err
	}
	var cl cleanups
	defer cl.run()

	// A key generated here (ed25519) and imported, as Terraform's public_key does.
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
	want := ssh.FingerprintLegacyMD5(sshPub)
	name := e.name("key")
	imported, err := keypairs.Create(client, keypairs.CreateOpts{Name: name, PublicKey: line}).Extract()
	if err != nil {
		return nil, err
	}
	cl.add(func() { keypairs.Delete(client, name) })
	if imported.Fingerprint != want {
		return nil, fmt.Errorf("imported key fingerprint %q, want %q", imported.Fingerprint, want)
	}
	if imported.PrivateKey != "" {
		return nil, errors.New("an imported key pair came back with a private key")
	}
	if err := keypairRoundTrip(client, imported); err != nil {
		return nil, err
	}

	// A key the server generates (no public key given): the private half comes back once.
	genName := e.name("genkey")
	gen, err := keypairs.Create(client, keypairs.CreateOpts{Name: genName}).Extract()
	if err != nil {
		return nil, err
	}
	cl.add(func() { keypairs.Delete(client, genName) })
	signer, err := ssh.ParsePrivateKey([]byte(gen.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("generated private key does not parse: %v", err)
	}
	genPub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(gen.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("generated public key does not parse: %v", err)
	}
	if !bytes.Equal(signer.PublicKey().Marshal(), genPub.Marshal()) {
		return nil, errors.New("generated private key does not match its public key")
	}
	if gen.Fingerprint != ssh.FingerprintLegacyMD5(genPub) {
		return nil, fmt.Errorf("generated key fingerprint %q, want %q", gen.Fingerprint,
			ssh.FingerprintLegacyMD5(genPub))
	}
	if err := keypairRoundTrip(client, gen); err != nil {
		return nil, err
	}
	return facts{"imported": facts{"name": name, "type": sshPub.Type(), "fingerprint": want},
		"generated": facts{"name": genName, "type": genPub.Type(),
			"fingerprint": gen.Fingerprint}}, nil
}

// ---- image ----

// createImage creates a raw image and uploads data into it; the caller deletes it.
func createImage(client *gophercloud.ServiceClient, name string, data []byte,
	cl *cleanups) (*images.Image, error) {
	img, err := images.Create(client, images.CreateOpts{Name: name, ContainerFormat: "bare",
		DiskFormat: "raw", Tags: []string{"gophercloud"}}).Extract()
	if err != nil {
		return nil, err
	}
	id := img.ID
	cl.add(func() { images.Delete(client, id) })
	if img.Status != images.ImageStatusQueued {
		return nil, fmt.Errorf("new image status %q, want queued", img.Status)
	}
	if err := imagedata.Upload(client, id, bytes.NewReader(data)).ExtractErr(); err != nil {
		return nil, err
	}
	return images.Get(client, id).Extract()
}

func stepImage(e *env) (facts, error) {
	client, err := openstack.NewImageServiceV2(e.provider, e.eo)
	if err != nil {
		return nil, err
	}
	var cl cleanups
	defer cl.run()
	data := make([]byte, 3000)
	if _, err := rand.Read(data); err != nil {
		return nil, err
	}
	img, err := createImage(client, e.name("image"), data, &cl)
	if err != nil {
		return nil, err
	}
	if img.Status != images.ImageStatusActive || img.SizeBytes != int64(len(data)) {
		return nil, fmt.Errorf("after upload: status %q size %d, want active %d", img.Status,
			img.SizeBytes, len(data))
	}
	sum := md5.Sum(data)
	if img.Checksum != hex.EncodeToString(sum[:]) {
		return nil, fmt.Errorf("image checksum %q, want the MD5 %x", img.Checksum, sum)
	}
	rc, err := imagedata.Download(client, img.ID).Extract()
	if err != nil {
		return nil, err
	}
	got, err := ioutil.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(got, data) {
		return nil, fmt.Errorf("downloaded %d bytes differ from the %d uploaded", len(got),
			len(data))
	}
	pages, err := images.List(client, images.ListOpts{Name: img.Name}).AllPages()
	if err != nil {
		return nil, err
	}
	list, err := images.ExtractImages(pages)
	if err != nil {
		return nil, err
	}
	if len(list) != 1 || list[0].ID != img.ID {
		return nil, fmt.Errorf("images.List name=%s: %d images", img.Name, len(list))
	}
	if err := images.Delete(client, img.ID).ExtractErr(); err != nil {
		return nil, err
	}
	if err := expectGone("image "+img.ID, func() error {
		_, err := images.Get(client, img.ID).Extract()
		return err
	}); err != nil {
		return nil, err
	}
	return facts{"id": img.ID, "size": img.SizeBytes, "checksum": img.Checksum,
		"status": string(img.Status)}, nil
}

// ---- network ----

func stepNetwork(e *env) (facts, error) {
	client, err := openstack.NewNetworkV2(e.provider, e.eo)
	if err != nil {
		return nil, err
	}
	var cl cleanups
	defer cl.run()
	up := true
	netw, err := networks.Create(client, networks.CreateOpts{Name: e.name("net"),
		AdminStateUp: &up}).Extract()
	if err != nil {
		return nil, err
	}
	cl.add(func() { networks.Delete(client, netw.ID) })
	sub, err := subnets.Create(client, subnets.CreateOpts{NetworkID: netw.ID,
		Name: e.name("subnet"), CIDR: "10.0.0.0/24", IPVersion: gophercloud.IPv4}).Extract()
	if err != nil {
		return nil, err
	}
	cl.add(func() { subnets.Delete(client, sub.ID) })
	if sub.CIDR != "10.0.0.0/24" || sub.IPVersion != 4 || sub.NetworkID != netw.ID {
		return nil, fmt.Errorf("subnet %+v", sub)
	}
	port, err := ports.Create(client, ports.CreateOpts{NetworkID: netw.ID,
		Name: e.name("port")}).Extract()
	if err != nil {
		return nil, err
	}
	cl.add(func() { ports.Delete(client, port.ID) })
	_, cidr, _ := net.ParseCIDR("10.0.0.0/24")
	if len(port.FixedIPs) != 1 || port.FixedIPs[0].SubnetID != sub.ID ||
		!cidr.Contains(net.ParseIP(port.FixedIPs[0].IPAddress)) {
		return nil, fmt.Errorf("port fixed IPs %+v, want one address of subnet %s", port.FixedIPs,
			sub.ID)
	}
	if port.MACAddress == "" {
		return nil, errors.New("port has no MAC address")
	}

	netPages, err := networks.List(client, networks.ListOpts{ID: netw.ID}).AllPages()
	if err != nil {
		return nil, err
	}
	nets, err := networks.ExtractNetworks(netPages)
	if err != nil {
		return nil, err
	}
	if len(nets) != 1 || len(nets[0].Subnets) != 1 || nets[0].Subnets[0] != sub.ID {
		return nil, fmt.Errorf("networks.List id=%s: %+v", netw.ID, nets)
	}
	subPages, err := subnets.List(client, subnets.ListOpts{NetworkID: netw.ID}).AllPages()
	if err != nil {
		return nil, err
	}
	subs, err := subnets.ExtractSubnets(subPages)
	if err != nil {
		return nil, err
	}
	if len(subs) != 1 || subs[0].ID != sub.ID {
		return nil, fmt.Errorf("subnets.List network_id=%s: %d subnets", netw.ID, len(subs))
	}
	portPages, err := ports.List(client, ports.ListOpts{NetworkID: netw.ID}).AllPages()
	if err != nil {
		return nil, err
	}
	plist, err := ports.ExtractPorts(portPages)
	if err != nil {
		return nil, err
	}
	found := false
	for _, p := range plist {
		found = found || p.ID == port.ID
	}
	if !found {
		return nil, fmt.Errorf("ports.List network_id=%s lacks port %s", netw.ID, port.ID)
	}

	if err := ports.Delete(client, port.ID).ExtractErr(); err != nil {
		return nil, err
	}
	if err := subnets.Delete(client, sub.ID).ExtractErr(); err != nil {
		return nil, err
	}
	if err := networks.Delete(client, netw.ID).ExtractErr(); err != nil {
		return nil, err
	}
	if err := expectGone("network "+netw.ID, func() error {
		_, err := networks.Get(client, netw.ID).Extract()
		return err
	}); err != nil {
		return nil, err
	}
	return facts{"network": netw.ID, "subnet": sub.ID, "port": port.ID,
		"ip": port.FixedIPs[0].IPAddress, "ports_listed": len(plist)}, nil
}

// ---- volume ----

func stepVolume(e *env) (facts, error) {
	client, err := openstack.NewBlockStorageV3(e.provider, e.eo)
	if err != nil {
		return nil, err
	}
	var cl cleanups
	defer cl.run()
	vol, err := volumes.Create(client, volumes.CreateOpts{Size: 1, Name: e.name("vol")}).Extract()
	if err != nil {
		return nil, err
	}
	cl.add(func() { volumes.Delete(client, vol.ID, volumes.DeleteOpts{}) })
	got, err := volumes.Get(client, vol.ID).Extract()
	if err != nil {
		return nil, err
	}
	if got.ID != vol.ID || got.Size != 1 || got.Name != vol.Name {
		return nil, fmt.Errorf("volumes.Get %+v differs from the created %+v", got, vol)
	}
	pages, err := volumes.List(client, volumes.ListOpts{Name: vol.Name}).AllPages()
	if err != nil {
		return nil, err
	}
	list, err := volumes.ExtractVolumes(pages)
	if err != nil {
		return nil, err
	}
	if len(list) != 1 || list[0].ID != vol.ID {
		return nil, fmt.Errorf("volumes.List name=%s: %d volumes", vol.Name, len(list))
	}
	// Without sov-block the volume stays 'creating'; the deletion must still be accepted.
	if err := volumes.Delete(client, vol.ID, volumes.DeleteOpts{}).ExtractErr(); err != nil {
		return nil, err
	}
	if err := waitGone("volume "+vol.ID, 20, func() error {
		_, err := volumes.Get(client, vol.ID).Extract()
		return err
	}); err != nil {
		return nil, err
	}
	return facts{"id": vol.ID, "size": got.Size, "status": got.Status}, nil
}

// ---- server ----

func stepServer(e *env) (facts, error) {
	compute, err := e.compute()
	if err != nil {
		return nil, err
	}
	imageClient, err := openstack.NewImageServiceV2(e.provider, e.eo)
	if err != nil {
		return nil, err
	}
	var cl cleanups
	defer cl.run()
	flavor, _, err := findFlavor(compute, "t3.micro")
	if err != nil {
		return nil, err
	}
	img, err := createImage(imageClient, e.name("srvimage"), []byte("sovcloud test image\n"), &cl)
	if err != nil {
		return nil, err
	}
	srv, err := servers.Create(compute, servers.CreateOpts{Name: e.name("server"),
		FlavorRef: flavor.ID, ImageRef: img.ID}).Extract()
	if err != nil {
		return nil, err
	}
	id := srv.ID
	cl.add(func() { servers.Delete(compute, id) })
	// No compute agent is registered: scheduling fails and the server lands in ERROR.
	if err := servers.WaitForStatus(compute, id, "ERROR", 30); err != nil {
		got, gerr := servers.Get(compute, id).Extract()
		if gerr == nil {
			return nil, fmt.Errorf("waiting for ERROR: %v (status %s)", err, got.Status)
		}
		return nil, fmt.Errorf("waiting for ERROR: %v", err)
	}
	got, err := servers.Get(compute, id).Extract()
	if err != nil {
		return nil, err
	}
	if !strings.Contains(got.Fault.Message, "No valid host was found") {
		return nil, fmt.Errorf("server fault %+v, want 'No valid host was found'", got.Fault)
	}
	if got.Flavor["id"] != flavor.ID && got.Flavor["original_name"] != flavor.Name {
		return nil, fmt.Errorf("server flavor %v, want %s", got.Flavor, flavor.ID)
	}
	if err := servers.Delete(compute, id).ExtractErr(); err != nil {
		return nil, err
	}
	if err := waitGone("server "+id, 30, func() error {
		_, err := servers.Get(compute, id).Extract()
		return err
	}); err != nil {
		return nil, err
	}
	return facts{"id": id, "status": got.Status, "fault": got.Fault.Message,
		"fault_code": got.Fault.Code, "image": img.ID}, nil
}

var steps = map[string]func(*env) (facts, error){
	"token":    stepToken,
	"projects": stepProjects,
	"flavors":  stepFlavors,
	"keypair":  stepKeypair,
	"image":    stepImage,
	"network":  stepNetwork,
	"volume":   stepVolume,
	"server":   stepServer,
}

func main() {
	if len(os.Args) < 2 {
		var names []string
		for n := range steps {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: %s STEP... (%s)\n", os.Args[0], strings.Join(names, ", "))
		os.Exit(2)
	}
	for _, s := range os.Args[1:] {
		if steps[s] == nil {
			fmt.Fprintf(os.Stderr, "%s: unknown step %q\n", os.Args[0], s)
			os.Exit(2)
		}
	}
	e, err := authenticate()
	if err != nil {
		fail("auth", err)
	}
	for _, s := range os.Args[1:] {
		start := time.Now()
		f, err := steps[s](e)
		if err != nil {
			fail(s, err)
		}
		f["step"] = s
		f["ok"] = true
		f["ms"] = time.Since(start).Milliseconds()
		printLine(f)
	}
}
