-- Argo CD health of an innoxide.dev MySQLBackup.
hs = {status = "Progressing", message = "Waiting for the operator"}
if obj.status == nil then
  return hs
end
local status = obj.status
if status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and status.observedGeneration < obj.metadata.generation then
  return hs
end
if status.message ~= nil then
  hs.message = status.message
end
if status.phase == "Completed" then
  hs.status = "Healthy"
elseif status.phase == "Failed" then
  hs.status = "Degraded"
end
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "DataDeleted" and condition.status == "False" then
      hs.status = "Degraded"
      hs.message = condition.message
    end
  end
end
return hs
