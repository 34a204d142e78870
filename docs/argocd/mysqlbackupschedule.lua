-- Argo CD health of an innoxide.dev MySQLBackupSchedule.
hs = {status = "Progressing", message = "Waiting for the operator"}
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: no backups are made"
  return hs
end
if obj.status == nil then
  return hs
end
local status = obj.status
if status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and status.observedGeneration < obj.metadata.generation then
  return hs
end
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      hs.message = condition.message
      if condition.status == "True" then
        hs.status = "Healthy"
      else
        hs.status = "Degraded"
      end
    end
  end
end
return hs
