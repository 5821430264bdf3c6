#!/bin/sh
# Run by the azd preprovision hook (preprovision.sh): the operator API app registration that App Service authentication
# validates tokens for, with the app roles the app checks per route (infra/operator-app-roles.json:
# Upgrade.Read, Upgrade.Operate, Upgrade.Approve). Idempotent: found by its display name and
# updated in place. Its client id becomes the azd value OPERATOR_APP_CLIENT_ID, which
# main.parameters.json passes to main.bicep. Assign the roles to people or groups afterwards
# (Enterprise applications > the app > Users and groups); a token without a role can do nothing.
set -eu

: "${AZURE_ENV_NAME:?run this through azd (azd provision / azd up)}"

infra_dir=$(cd "$(dirname "$0")/.." && pwd)
name="aks-upgrade-operators-$AZURE_ENV_NAME"

# An exact match: az's --display-name matches by prefix, so "dev" would find "dev2"'s registration
# (and this environment would then accept the other's tokens).
app_id=$(az ad app list --filter "displayName eq '$name'" --query "[0].appId" --output tsv)
if [ -z "$app_id" ]; then
  app_id=$(az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg --query appId --output tsv)
fi
# v2 access tokens (issuer .../v2.0, as authsettingsV2 expects), the api:// identifier the CLI
# asks tokens for, and the app roles.
az ad app update --id "$app_id" --identifier-uris "api://$app_id" \
  --app-roles "@$infra_dir/operator-app-roles.json" --set api.requestedAccessTokenVersion=2
# The enterprise application (service principal) that role assignments attach to.
if [ -z "$(az ad sp list --filter "appId eq '$app_id'" --query "[0].id" --output tsv)" ]; then
  az ad sp create --id "$app_id" --output none
fi
azd env set OPERATOR_APP_CLIENT_ID "$app_id"
