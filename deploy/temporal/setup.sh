#!/bin/sh
# Creates the lethe namespace and the custom search attributes the fulfillment workflows
# use, once the Temporal frontend answers. Idempotent: existing ones are left alone.
set -eu
addr="${TEMPORAL_ADDRESS:-temporal:7233}"
until temporal operator cluster health --address "$addr" >/dev/null 2>&1; do sleep 2; done
temporal operator namespace describe --address "$addr" -n lethe >/dev/null 2>&1 ||
  temporal operator namespace create --address "$addr" -n lethe --retention 30d
for sa in LetheRequestKind:Keyword LetheRequestStatus:Keyword LetheDueTime:Datetime LetheJurisdiction:Keyword; do
  temporal operator search-attribute create --address "$addr" -n lethe --name "${sa%%:*}" --type "${sa##*:}" 2>/dev/null || true
done
echo "lethe namespace ready"
