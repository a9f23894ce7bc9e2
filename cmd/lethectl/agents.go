package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	"lethe.dev/platform/config"
	"lethe.dev/platform/transport"
)

const agentsUsage = `usage: lethectl agents create -id AGENT-ID -name NAME -verify-key KEY -contact ADDRESS [-fulfillment HOST:PORT]
       lethectl agents list [-fulfillment HOST:PORT]
       lethectl agents delete -id AGENT-ID [-fulfillment HOST:PORT]
KEY is the agent's Ed25519 verify key: base64 (as the DRP directory publishes it) or hex.`

// runAgents manages the Data Rights Protocol's authorized agents in fulfillment.
func runAgents(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(agentsUsage)
	}
	fs := flag.NewFlagSet("agents "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	id := fs.String("id", "", "the agent's DRP agent-id")
	name := fs.String("name", "", "the agent's consumer-legible name")
	key := fs.String("verify-key", "", "the agent's Ed25519 verify key (base64 or hex)")
	contact := fs.String("contact", "", "the agent's technical contact")
	addr := fs.String("fulfillment", config.Env("FULFILLMENT_ADDRESS", "127.0.0.1:7104"), "fulfillment's gRPC address (FULFILLMENT_ADDRESS)")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%v\n%s", err, agentsUsage)
	}
	conn, err := transport.FromEnv().Dial(*addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := fulfillmentv1.NewDataRightsServiceClient(conn)
	switch args[0] {
	case "create":
		raw, err := decodeKey(*key)
		if err != nil {
			return err
		}
		a, err := c.CreateAuthorizedAgent(ctx, &fulfillmentv1.CreateAuthorizedAgentRequest{AuthorizedAgentId: *id,
			AuthorizedAgent: &fulfillmentv1.AuthorizedAgent{DisplayName: *name, VerifyKey: raw, Contact: *contact}})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "registered %s (%s)\n", a.GetName(), a.GetDisplayName())
	case "list":
		token := ""
		for {
			res, err := c.ListAuthorizedAgents(ctx, &fulfillmentv1.ListAuthorizedAgentsRequest{PageSize: 500, PageToken: token})
			if err != nil {
				return err
			}
			for _, a := range res.GetAuthorizedAgents() {
				fmt.Fprintf(out, "%s\t%s\t%s\t%s\n", strings.TrimPrefix(a.GetName(), "authorizedAgents/"), a.GetDisplayName(), a.GetContact(), base64.StdEncoding.EncodeToString(a.GetVerifyKey()))
			}
			if token = res.GetNextPageToken(); token == "" {
				return nil
			}
		}
	case "delete":
		if _, err := c.DeleteAuthorizedAgent(ctx, &fulfillmentv1.DeleteAuthorizedAgentRequest{Name: "authorizedAgents/" + *id}); err != nil {
			return err
		}
		fmt.Fprintf(out, "deleted authorizedAgents/%s; its tokens no longer work\n", *id)
	default:
		return errors.New(agentsUsage)
	}
	return nil
}

// decodeKey reads a 32-byte Ed25519 verify key in base64 or hex.
func decodeKey(s string) ([]byte, error) {
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("-verify-key must be a 32-byte Ed25519 public key in base64 or hex")
}
