// Command datamap checks that every field of Lethe's service APIs carries a privacy
// classification and every RPC declares who may call it (lethe.auth.v1.access), and
// prints the data inventory. It exits 1 when a field is unclassified or an RPC declares
// no access, so CI fails on either.
//
//	go run lethe.dev/platform/cmd/datamap            # check, print a summary
//	go run lethe.dev/platform/cmd/datamap -markdown  # print the inventory as a table
package main

import (
	"flag"
	"fmt"
	"os"

	"google.golang.org/protobuf/reflect/protoregistry"

	_ "lethe.dev/gen/lethe/fulfillment/v1"
	_ "lethe.dev/gen/lethe/identity/v1"
	_ "lethe.dev/gen/lethe/preferences/v1"
	_ "lethe.dev/gen/lethe/sharing/v1"
	_ "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/authz"
	"lethe.dev/platform/classify"
)

func main() {
	markdown := flag.Bool("markdown", false, "print the data inventory as a Markdown table")
	flag.Parse()
	if v := classify.Check(protoregistry.GlobalFiles); len(v) > 0 {
		for _, x := range v {
			fmt.Fprintln(os.Stderr, "unclassified:", x)
		}
		fmt.Fprintf(os.Stderr, "datamap: %d field(s) fail the classification check\n", len(v))
		os.Exit(1)
	}
	if v := authz.Check(protoregistry.GlobalFiles); len(v) > 0 {
		for _, x := range v {
			fmt.Fprintln(os.Stderr, "undeclared:", x)
		}
		fmt.Fprintf(os.Stderr, "datamap: %d RPC(s) declare no access\n", len(v))
		os.Exit(1)
	}
	inv := classify.Inventory(protoregistry.GlobalFiles)
	if *markdown {
		fmt.Println("| field | category | erasure | legal basis |")
		fmt.Println("|---|---|---|---|")
		for _, e := range inv {
			fmt.Printf("| `%s` | `%s` | %s | %s |\n", e.Field, e.Category, e.Erasure, e.LegalBasis)
		}
		return
	}
	member := 0
	for _, e := range inv {
		if e.MemberData {
			member++
		}
	}
	fmt.Printf("datamap: %d fields classified, %d hold member data, 0 unclassified\n", len(inv), member)
}
