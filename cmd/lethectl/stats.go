package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
)

func statsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stats [YEAR]",
		Short: "The yearly figures a regulator asks for (default: this year)",
		Long: `Prints, per request kind, the requests received, completed and denied in a calendar year
and the median days to respond, then the operator actions of the year by action.`,
		Example: "  lethectl stats 2026\n  lethectl stats 2026 -o json",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			year := time.Now().UTC().Year()
			if len(args) == 1 {
				y, err := strconv.Atoi(args[0])
				if err != nil || y < 2000 || y > 9999 {
					return usageError("YEAR must be a year such as 2026, not %q", args[0])
				}
				year = y
			}
			c, ctx, cancel, err := g.fulfillment(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			st, err := c.GetRequestStatistics(ctx, &fulfillmentv1.GetRequestStatisticsRequest{Year: int32(year)})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if g.output == "json" {
				return printJSON(w, st)
			}
			fmt.Fprintf(w, "Privacy requests in %d\n\n", st.GetYear())
			t := newTable(w, "KIND", "RECEIVED", "COMPLETED", "DENIED", "MEDIAN DAYS TO RESPOND")
			for _, k := range st.GetKinds() {
				t.row(short(k.GetKind().String(), "REQUEST_KIND_"), strconv.FormatInt(k.GetReceived(), 10), strconv.FormatInt(k.GetCompleted(), 10),
					strconv.FormatInt(k.GetDenied(), 10), strconv.FormatFloat(k.GetMedianDaysToRespond(), 'f', 1, 64))
			}
			if err := t.flush(); err != nil {
				return err
			}
			if len(st.GetOperatorActions()) > 0 {
				fmt.Fprintln(w)
				t := newTable(w, "OPERATOR ACTION", "COUNT")
				for _, a := range st.GetOperatorActions() {
					t.row(a.GetAction(), strconv.FormatInt(a.GetCount(), 10))
				}
				return t.flush()
			}
			return nil
		},
	}
}
