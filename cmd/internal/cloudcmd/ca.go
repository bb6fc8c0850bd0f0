package cloudcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"

	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/pki"
)

// defaultCADir is where a first `cyphonic cloud` on embedded defaults
// creates the CA (beside its data directory, never in it: see
// server.BootstrapCADir), so `cyphonic ca issue` run beside it needs no
// flags.
const defaultCADir = "cyphonic-data-ca"

func runCA(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: need a subcommand: init, issue, issue-service, revoke or list", cli.ErrUsage)
	}
	switch args[0] {
	case "init":
		return caInit(args[1:], stdout, stderr)
	case "issue":
		return caIssue(args[1:], stdout, stderr)
	case "issue-service":
		return caIssueService(args[1:], stdout, stderr)
	case "revoke":
		return caRevoke(args[1:], stdout, stderr)
	case "list":
		return caList(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, "Usage: cyphonic ca init|issue|issue-service|revoke|list [flags]")
		return nil
	}
	return fmt.Errorf("%w: unknown ca subcommand %q", cli.ErrUsage, args[0])
}

func caInit(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("ca init", stderr)
	dir := fs.String("dir", defaultCADir, "directory for ca.crt and ca.key")
	name := fs.String("name", rootca.DefaultCAName, "the CA's common name")
	validity := fs.Duration("validity", 10*365*24*time.Hour, "how long the root is valid")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := positive("validity", *validity); err != nil {
		return err
	}
	ca, err := rootca.Init(*dir, *name, *validity)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created root CA %q in %s (valid until %s)\n", *name, ca.Dir(),
		ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

func caIssue(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("ca issue", stderr)
	dir := fs.String("dir", defaultCADir, "the CA directory")
	fqdn := fs.String("fqdn", "", "issue a node certificate for this FQDN (e.g. alice.example.cyphonic)")
	service := fs.String("service", "", "issue a cloud service certificate: as, nms or trs")
	out := fs.String("out", "", "directory to write node.crt, node.key, noise.key and ca.crt (default: the FQDN or service name)")
	validity := fs.Duration("validity", 365*24*time.Hour, "how long the certificate is valid")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := positive("validity", *validity); err != nil {
		return err
	}
	if (*fqdn == "") == (*service == "") {
		return fmt.Errorf("%w: give exactly one of --fqdn or --service", cli.ErrUsage)
	}
	role, name := pki.RoleNode, "" // name: the service's or the canonical FQDN, below
	if *service != "" {
		r, err := pki.ParseRole(*service)
		if err != nil || !r.IsService() {
			return fmt.Errorf("%w: --service must be as, nms or trs, not %q", cli.ErrUsage, *service)
		}
		role, name = r, *service
	} else {
		canon, err := pki.CanonicalFQDN(*fqdn)
		if err != nil {
			return fmt.Errorf("%w: --fqdn: %v", cli.ErrUsage, err)
		}
		name = canon
	}
	if *out == "" {
		*out = name
	}
	ca, err := rootca.Load(*dir)
	if err != nil {
		return fmt.Errorf("%w (create one with 'cyphonic ca init --dir %s', or run 'cyphonic cloud')", err, *dir)
	}
	before, err := ca.Issued()
	if err != nil {
		return err
	}
	id, err := ca.Issue(role, name, *validity)
	if err != nil {
		return err
	}
	if err := pki.WriteIdentity(*out, id); err != nil {
		return err
	}
	if err := pki.WriteRoot(*out, ca.Cert); err != nil {
		return err
	}
	abs, _ := filepath.Abs(*out)
	fmt.Fprintf(stdout, "issued %s certificate for %s, serial %s, valid until %s\n",
		role, id.FQDN, pki.FormatSerial(id.Cert.SerialNumber), id.Cert.NotAfter.UTC().Format(time.RFC3339))
	if role == pki.RoleNode {
		// The CA allocated these (recorded in issued.json): peers check
		// them against the certificate, so they are the node's for good.
		fmt.Fprintf(stdout, "VIPs %s %s\n", id.VIP6, id.VIP4)
	}
	fmt.Fprintf(stdout, "written to %s\n", abs)
	crl, err := pki.LoadCRL(ca.Dir(), ca.Cert)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, c := range before {
		if c.FQDN != id.FQDN || c.NotAfter.Before(now) {
			continue
		}
		if s, err := pki.ParseSerial(c.Serial); err == nil && crl.DenyList().Contains(s) {
			continue
		}
		// Both stay valid: a node holding the old one still logs in under
		// this name, and the cloud keeps one session per name, so two
		// nodes with it displace each other.
		fmt.Fprintf(stdout, "note: %s's earlier certificate, serial %s (valid until %s), stays valid: a node holding it still logs in as %s, "+
			"and two nodes with one name displace each other's session.\n  If this one replaces it, revoke it: cyphonic ca revoke --dir %s %s\n",
			id.FQDN, c.Serial, c.NotAfter.Format(time.RFC3339), id.FQDN, ca.Dir(), c.Serial)
	}
	return nil
}

// positive refuses a validity that is not positive (flag.Duration takes
// "-1h"; the CA would fail later with an obscure message).
func positive(name string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%w: --%s %v: must be positive (e.g. 8760h for a year)", cli.ErrUsage, name, d)
	}
	return nil
}

func caRevoke(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("ca revoke", stderr)
	dir := fs.String("dir", defaultCADir, "the CA directory")
	force := fs.Bool("force", false, "revoke a serial the CA has no record of (issued before it kept one, or by a copy of it)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: need exactly one serial (hex, as 'ca issue' printed it)", cli.ErrUsage)
	}
	serial, err := pki.ParseSerial(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	ca, err := rootca.Load(*dir)
	if err != nil {
		return err
	}
	issued, err := ca.Issued()
	if err != nil {
		return err
	}
	var what string
	for _, c := range issued {
		if c.Serial == pki.FormatSerial(serial) {
			what = fmt.Sprintf(" (%s %s, valid until %s)", c.Role, c.FQDN, c.NotAfter.Format(time.RFC3339))
		}
	}
	if what == "" && !*force {
		return fmt.Errorf("serial %s: this CA (%s) has no record of issuing it: check the serial with 'cyphonic ca list --dir %s'; "+
			"--force revokes it anyway", pki.FormatSerial(serial), ca.Dir(), *dir)
	}
	old, err := pki.LoadCRL(ca.Dir(), ca.Cert)
	if err != nil {
		return err
	}
	if old.DenyList().Contains(serial) {
		fmt.Fprintf(stdout, "serial %s%s is already revoked (deny list number %d): nothing changed\n", pki.FormatSerial(serial), what, old.Number)
		return nil
	}
	if err := ca.Revoke(serial); err != nil {
		return err
	}
	crl, err := pki.LoadCRL(ca.Dir(), ca.Cert)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked serial %s%s: deny list number %d signed into %s\n", pki.FormatSerial(serial), what, crl.Number,
		filepath.Join(ca.Dir(), pki.CRLFile))
	fmt.Fprintf(stdout, "copy it into each cloud process's CA directory (beside its ca.crt) if that is not this one;\n"+
		"the cloud reloads it, ends the node's sessions and pushes the list to every node, which end their tunnels to it\n")
	return nil
}

func caList(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("ca list", stderr)
	dir := fs.String("dir", defaultCADir, "the CA directory")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	root, err := pki.LoadRoot(*dir)
	if err != nil {
		return err
	}
	crl, err := pki.LoadCRL(*dir, root)
	if err != nil {
		return err
	}
	issued, err := rootca.ListIssued(*dir)
	if err != nil {
		return err
	}
	deny := crl.DenyList()
	var number uint64
	if crl != nil {
		number = crl.Number
	}
	now := time.Now()
	// The newest certificate of each name, to mark the ones it replaced.
	newest := map[string]string{}
	for _, c := range issued {
		newest[c.Role+" "+c.FQDN] = c.Serial
	}
	fmt.Fprintf(stdout, "%d certificate(s) issued, %d revoked serial(s), deny list number %d\n", len(issued), deny.Len(), number)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERIAL\tROLE\tNAME\tNOT AFTER\tSTATE")
	listed := map[string]bool{}
	for _, c := range issued {
		listed[c.Serial] = true
		s, _ := pki.ParseSerial(c.Serial)
		state := "valid"
		switch {
		case deny.Contains(s):
			state = "revoked"
		case c.NotAfter.Before(now):
			state = "expired"
		case newest[c.Role+" "+c.FQDN] != c.Serial:
			state = "valid (a newer one exists: " + newest[c.Role+" "+c.FQDN] + ")"
		case c.NotAfter.Sub(now) < 30*24*time.Hour:
			state = "valid (expires in " + c.NotAfter.Sub(now).Round(time.Hour).String() + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Serial, c.Role, c.FQDN, c.NotAfter.Format(time.RFC3339), state)
	}
	for _, s := range deny.Serials() {
		if !listed[s] {
			fmt.Fprintf(tw, "%s\t-\t-\t-\trevoked (not in this CA's record)\n", s)
		}
	}
	return tw.Flush()
}

// caIssueService provisions a cloud data directory from the CA: the root
// certificate and the services' certificates, so the cloud runs with the CA
// key nowhere near it.
func caIssueService(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("ca issue-service", stderr)
	dir := fs.String("dir", defaultCADir, "the CA directory")
	data := fs.String("data", server.DefaultDataDir(), "the cloud's data directory (gets ca/ca.crt and one directory per service)")
	services := fs.String("services", "as,nms,trs", "services to issue certificates for (comma-separated: as, nms, trs)")
	validity := fs.Duration("validity", server.ServiceValidity, "how long the certificates are valid")
	renew := fs.Bool("renew", false, "replace certificates that exist (restart the cloud afterwards)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := positive("validity", *validity); err != nil {
		return err
	}
	var roles []pki.Role
	for _, name := range splitList(*services) {
		r, err := pki.ParseRole(name)
		if err != nil || !r.IsService() {
			return fmt.Errorf("%w: --services: %q is not as, nms or trs", cli.ErrUsage, name)
		}
		roles = append(roles, r)
	}
	if len(roles) == 0 {
		return fmt.Errorf("%w: --services: none given", cli.ErrUsage)
	}
	ca, err := rootca.Load(*dir)
	if err != nil {
		return fmt.Errorf("%w (create one with 'cyphonic ca init --dir %s')", err, *dir)
	}
	ids, err := server.Provision(ca, *data, roles, *validity, *renew)
	if errors.Is(err, server.ErrIdentityExists) {
		return fmt.Errorf("%w (--renew replaces it)", err)
	}
	if err != nil {
		return err
	}
	abs, _ := filepath.Abs(*data)
	for _, id := range ids {
		fmt.Fprintf(stdout, "issued %s certificate, serial %s, valid until %s\n", id.Role,
			pki.FormatSerial(id.Cert.SerialNumber), id.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(stdout, "written to %s (no CA key: keep %s offline)\n", abs, *dir)
	return nil
}
