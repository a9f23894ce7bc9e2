package main

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
)

// agentsCmd manages the Data Rights Protocol's authorized agents in fulfillment.
func agentsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "agents",
		Short: "Register, list and remove Data Rights Protocol authorized agents",
		Long: `Authorized agents (e.g. Permission Slip) send signed Data Rights Protocol requests for
members. Register each with its DRP agent-id, name, Ed25519 verify key and technical contact.`,
	}
	var id, name, key, contact string
	create := &cobra.Command{
		Use:     "create --id AGENT-ID --name NAME --verify-key KEY --contact ADDRESS",
		Short:   "Register an agent",
		Long:    "Registers an agent. KEY is its Ed25519 verify key: base64 (as the DRP directory publishes it) or hex.",
		Example: "  lethectl agents create --id PERMISSION_SLIP --name 'Permission Slip' --verify-key <base64> --contact drp@agent.example",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := decodeKey(key)
			if err != nil {
				return err
			}
			c, ctx, cancel, err := g.dataRights(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			a, err := c.CreateAuthorizedAgent(ctx, &fulfillmentv1.CreateAuthorizedAgentRequest{AuthorizedAgentId: id,
				AuthorizedAgent: &fulfillmentv1.AuthorizedAgent{DisplayName: name, VerifyKey: raw, Contact: contact}})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), a)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "registered %s (%s)\n", a.GetName(), a.GetDisplayName())
			return nil
		},
	}
	create.Flags().StringVar(&id, "id", "", "the agent's DRP agent-id")
	create.Flags().StringVar(&name, "name", "", "the agent's consumer-legible name")
	create.Flags().StringVar(&key, "verify-key", "", "the agent's Ed25519 verify key (base64 or hex)")
	create.Flags().StringVar(&contact, "contact", "", "the agent's technical contact")
	for _, f := range []string{"id", "name", "verify-key", "contact"} {
		_ = create.MarkFlagRequired(f)
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List agents: id, name, contact, verify key (tab-separated)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := g.dataRights(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			all := &fulfillmentv1.ListAuthorizedAgentsResponse{}
			token := ""
			for {
				res, err := c.ListAuthorizedAgents(ctx, &fulfillmentv1.ListAuthorizedAgentsRequest{PageSize: 500, PageToken: token})
				if err != nil {
					return err
				}
				all.AuthorizedAgents = append(all.AuthorizedAgents, res.GetAuthorizedAgents()...)
				if token = res.GetNextPageToken(); token == "" {
					break
				}
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), all)
			}
			for _, a := range all.GetAuthorizedAgents() {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%s\t%s\n", strings.TrimPrefix(a.GetName(), "authorizedAgents/"), a.GetDisplayName(), a.GetContact(), base64.StdEncoding.EncodeToString(a.GetVerifyKey()))
			}
			return nil
		},
	}

	var delID string
	del := &cobra.Command{
		Use:   "delete --id AGENT-ID",
		Short: "Remove an agent; its tokens stop working",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := g.dataRights(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			if _, err := c.DeleteAuthorizedAgent(ctx, &fulfillmentv1.DeleteAuthorizedAgentRequest{Name: "authorizedAgents/" + delID}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted authorizedAgents/%s; its tokens no longer work\n", delID)
			return nil
		},
	}
	del.Flags().StringVar(&delID, "id", "", "the agent's DRP agent-id")
	_ = del.MarkFlagRequired("id")
	c.AddCommand(create, list, del)
	return c
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
	return nil, errors.New("--verify-key must be a 32-byte Ed25519 public key in base64 or hex")
}
