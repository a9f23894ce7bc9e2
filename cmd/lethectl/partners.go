package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
)

func partnersCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:     "partners",
		Aliases: []string{"partner"},
		Short:   "The partner registry: who receives members' data, for what",
		Long: `Partners (processors, marketing partners, advertisers, …) in sharing's registry, with the
purposes and data categories they may receive and, for processors, the webhook that
receives onward erasures and its acknowledgement deadline.`,
	}
	c.AddCommand(partnersListCmd(g), partnersCreateCmd(g), partnersUpdateCmd(g))
	return c
}

func partnersListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List partners",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := g.partners(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			all := &sharingv1.ListPartnersResponse{}
			for token := ""; ; {
				res, err := c.ListPartners(ctx, &sharingv1.ListPartnersRequest{PageSize: 500, PageToken: token})
				if err != nil {
					return err
				}
				all.Partners = append(all.Partners, res.GetPartners()...)
				if token = res.GetNextPageToken(); token == "" {
					break
				}
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), all)
			}
			t := newTable(cmd.OutOrStdout(), "NAME", "DISPLAY NAME", "KIND", "PURPOSES", "CATEGORIES", "AGREEMENT", "ACK DEADLINE", "WEBHOOK")
			for _, p := range all.GetPartners() {
				ack := "-"
				if p.GetAckDeadline() != nil {
					ack = p.GetAckDeadline().AsDuration().String()
				}
				t.row(p.GetName(), p.GetDisplayName(), short(p.GetKind().String(), "PARTNER_KIND_"), strings.Join(p.GetPurposes(), ","),
					strings.Join(p.GetDataCategories(), ","), p.GetAgreementRef(), ack, p.GetErasureWebhookUrl())
			}
			return t.flush()
		},
	}
}

// partnerFlags are the editable fields of a partner.
type partnerFlags struct {
	displayName, kind, agreement, webhook, secret string
	purposes, categories                          []string
	ack                                           time.Duration
}

func (f *partnerFlags) register(c *cobra.Command) {
	fs := c.Flags()
	fs.StringVar(&f.displayName, "display-name", "", "the partner's legal name")
	fs.StringSliceVar(&f.purposes, "purposes", nil, "purposes it may receive data for, comma-separated (e.g. payment_processing)")
	fs.StringSliceVar(&f.categories, "categories", nil, "fideslang data categories it may receive, comma-separated (e.g. user.contact.email)")
	fs.StringVar(&f.agreement, "agreement", "", "reference of the contract or data processing agreement")
	fs.StringVar(&f.webhook, "webhook-url", "", "processors: URL that receives onward erasures (https; loopback http in dev)")
	fs.StringVar(&f.secret, "webhook-secret", "", "processors: secret that signs webhook calls both ways (never printed back)")
	fs.DurationVar(&f.ack, "ack-deadline", 0, "processors: contractual time to acknowledge an erasure (e.g. 72h)")
}

// partner builds the message and the field mask of the flags given.
func (f *partnerFlags) partner(c *cobra.Command) (*sharingv1.Partner, []string) {
	p := &sharingv1.Partner{DisplayName: f.displayName, Purposes: f.purposes, DataCategories: f.categories, AgreementRef: f.agreement,
		ErasureWebhookUrl: f.webhook, WebhookSecret: f.secret}
	if f.ack > 0 {
		p.AckDeadline = durationpb.New(f.ack)
	}
	var mask []string
	for flag, path := range map[string]string{"display-name": "display_name", "purposes": "purposes", "categories": "data_categories", "agreement": "agreement_ref",
		"webhook-url": "erasure_webhook_url", "webhook-secret": "webhook_secret", "ack-deadline": "ack_deadline"} {
		if c.Flags().Changed(flag) {
			mask = append(mask, path)
		}
	}
	return p, mask
}

func partnersCreateCmd(g *globals) *cobra.Command {
	var f partnerFlags
	c := &cobra.Command{
		Use:   "create ID --display-name NAME --kind KIND --purposes P,… --categories C,… [--webhook-url URL --webhook-secret S --ack-deadline D]",
		Short: "Register a partner",
		Long: `Registers a partner as partners/ID (ID: [a-z0-9-]{3,63}). KIND is processor,
marketing_partner, social_network, advertiser, legal_authority or acquirer. Processors need
--webhook-url, --webhook-secret and --ack-deadline: onward erasures go there.`,
		Example: `  lethectl partners create acme-billing --display-name 'Acme Billing Ltd' --kind processor \
    --purposes payment_processing --categories user.financial --agreement DPA-2026-01 \
    --webhook-url https://acme.example/erasure --webhook-secret "$SECRET" --ack-deadline 72h`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, _ := f.partner(cmd)
			k, ok := sharingv1.PartnerKind_value["PARTNER_KIND_"+strings.ToUpper(strings.TrimPrefix(strings.ToUpper(f.kind), "PARTNER_KIND_"))]
			if !ok || k == 0 {
				return usageError("--kind must be processor, marketing_partner, social_network, advertiser, legal_authority or acquirer")
			}
			p.Kind = sharingv1.PartnerKind(k)
			c, ctx, cancel, err := g.partners(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			res, err := c.CreatePartner(ctx, &sharingv1.CreatePartnerRequest{PartnerId: strings.TrimPrefix(args[0], "partners/"), Partner: p})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created %s (%s)\n", res.GetName(), res.GetDisplayName())
			return nil
		},
	}
	f.register(c)
	c.Flags().StringVar(&f.kind, "kind", "", "processor, marketing_partner, social_network, advertiser, legal_authority or acquirer")
	_ = c.MarkFlagRequired("kind")
	return c
}

func partnersUpdateCmd(g *globals) *cobra.Command {
	var f partnerFlags
	c := &cobra.Command{
		Use:   "update ID [--display-name …] [--purposes …] [--categories …] [--agreement …] [--webhook-url …] [--webhook-secret …] [--ack-deadline …]",
		Short: "Change a partner: only the fields given",
		Long: `Changes the fields given and keeps the others (an update mask of the flags set). A new
purpose or category for a partner that already receives data is what members get advance
notice of: see NotifyMembers.`,
		Example: "  lethectl partners update acme-billing --purposes payment_processing,fraud_prevention",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, mask := f.partner(cmd)
			if len(mask) == 0 {
				return usageError("name at least one field to change")
			}
			p.Name = "partners/" + strings.TrimPrefix(args[0], "partners/")
			c, ctx, cancel, err := g.partners(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			res, err := c.UpdatePartner(ctx, &sharingv1.UpdatePartnerRequest{Partner: p, UpdateMask: &fieldmaskpb.FieldMask{Paths: mask}})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "updated %s (%s)\n", res.GetName(), strings.Join(mask, ", "))
			return nil
		},
	}
	f.register(c)
	return c
}
