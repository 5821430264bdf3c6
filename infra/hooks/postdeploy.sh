#!/bin/sh
# azd postdeploy hook, second deployment stage: once the code (and so the on_aks_event function)
# exists, create each target cluster's Event Grid system topic and subscription from
# infra/subscriptions.bicep. Creating them earlier fails with "Destination endpoint not found".
# Optionally (APPLY_KUBERNETES_RBAC=true) applies the Kubernetes RBAC manifest to every cluster.
# Reads the azd environment values azd exports to hooks.
set -eu

: "${AZURE_ENV_NAME:?run this through azd (azd deploy / azd up)}"
: "${AZURE_RESOURCE_GROUP:?missing: run azd provision first}"
: "${AZURE_FUNCTION_APP_ID:?missing: run azd provision first}"
: "${TARGET_CLUSTER_IDS:?missing: run azd provision first}"
: "${APP_IDENTITY_PRINCIPAL_ID:?missing: run azd provision first}"

infra_dir=$(cd "$(dirname "$0")/.." && pwd)
work_dir=$(mktemp -d)
trap 'rm -rf "$work_dir"' EXIT

# The console's browser sign-in (App Service authentication's /.auth/login/aad flow): the operator
# app registration needs the app's callback as a web redirect URI and ID-token issuance (with no
# client secret configured, App Service signs browsers in with ID tokens). The host name is only
# known once provisioned, hence here rather than in the preprovision hook.
if [ -n "${OPERATOR_APP_CLIENT_ID:-}" ] && [ -n "${AZURE_FUNCTION_APP_HOSTNAME:-}" ]; then
  az ad app update --id "$OPERATOR_APP_CLIENT_ID" \
    --web-redirect-uris "https://$AZURE_FUNCTION_APP_HOSTNAME/.auth/login/aad/callback" \
    --enable-id-token-issuance true
  echo "Console sign-in: https://$AZURE_FUNCTION_APP_HOSTNAME/.auth/login/aad?post_login_redirect_uri=/api/console/"
fi

# TARGET_CLUSTER_IDS is the JSON array main.bicep outputs: it goes into the file as is.
cat > "$work_dir/subscriptions.parameters.json" <<JSON
{
  "\$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {
    "environmentName": { "value": "$AZURE_ENV_NAME" },
    "functionAppId": { "value": "$AZURE_FUNCTION_APP_ID" },
    "targetClusterIds": { "value": $TARGET_CLUSTER_IDS },
    "fleetId": { "value": "${FLEET_ID:-}" }
  }
}
JSON

# The function is indexed shortly after the package lands: retry while Event Grid cannot see it.
attempts=${EVENT_SUBSCRIPTION_ATTEMPTS:-6}
delay=${EVENT_SUBSCRIPTION_RETRY_SECONDS:-30}
attempt=1
until az deployment group create \
    --resource-group "$AZURE_RESOURCE_GROUP" \
    --name "aks-upgrade-events-$AZURE_ENV_NAME" \
    --template-file "$infra_dir/subscriptions.bicep" \
    --parameters "@$work_dir/subscriptions.parameters.json" \
    --output none; do
  if [ "$attempt" -ge "$attempts" ]; then
    echo "Event Grid subscriptions failed after $attempts attempts" >&2
    exit 1
  fi
  echo "Event Grid subscriptions not created yet (attempt $attempt/$attempts); retrying in ${delay}s" >&2
  attempt=$((attempt + 1))
  sleep "$delay"
done
echo "Event Grid subscriptions in place for: $TARGET_CLUSTER_IDS"

sed "s/\${APP_IDENTITY_PRINCIPAL_ID}/$APP_IDENTITY_PRINCIPAL_ID/" \
  "$infra_dir/k8s/upgrade-operator-rbac.yaml" > "$work_dir/upgrade-operator-rbac.yaml"

if [ "${APPLY_KUBERNETES_RBAC:-false}" != "true" ]; then
  echo "Kubernetes RBAC not applied (APPLY_KUBERNETES_RBAC is not true). Apply it to each cluster:"
  echo "  sed 's/\${APP_IDENTITY_PRINCIPAL_ID}/$APP_IDENTITY_PRINCIPAL_ID/' infra/k8s/upgrade-operator-rbac.yaml | kubectl apply -f -"
  exit 0
fi

# Through the AKS run-command API, so private clusters work too; needs the deployer's rights.
printf '%s' "$TARGET_CLUSTER_IDS" | tr -d '[]" ' | tr ',' '\n' | while read -r cluster_id; do
  [ -n "$cluster_id" ] || continue
  cluster_rg=$(printf '%s' "$cluster_id" | cut -d/ -f5)
  cluster_name=$(printf '%s' "$cluster_id" | cut -d/ -f9)
  cluster_subscription=$(printf '%s' "$cluster_id" | cut -d/ -f3)
  echo "Applying Kubernetes RBAC to $cluster_name"
  (cd "$work_dir" && az aks command invoke \
    --subscription "$cluster_subscription" \
    --resource-group "$cluster_rg" \
    --name "$cluster_name" \
    --command "kubectl apply -f upgrade-operator-rbac.yaml" \
    --file upgrade-operator-rbac.yaml \
    --output none)
done
