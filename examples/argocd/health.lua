-- Argo CD health check for exports.crm.dev/ScheduledExport.
--
-- Installed through argocd-cm under resource.customizations.health.exports.crm.dev_ScheduledExport
-- (argocd-cm.yaml next to this file embeds this exact text; a test keeps the two identical).
-- Argo CD runs it in gopher-lua (Lua 5.1) with only the base and table libraries, the object
-- as the global `obj`.
--
--   Progressing  the operator has not reported on this generation of the object yet, or an
--                export is running
--   Suspended    spec.suspend is true
--   Degraded     Ready is False (invalid schedule, missing Secret), Exported is False (the last
--                run failed), or Delivered is False (the server could not be reached for the
--                recheck, or the file went missing and could not be copied again)
--   Healthy      otherwise; the message names the next run and the last delivered file

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.type .. " is " .. c.status
  if c.reason ~= nil and c.reason ~= "" then
    text = text .. " (" .. c.reason .. ")"
  end
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local function health()
  local generation = obj.metadata.generation
  local status = obj.status
  if status == nil or status.observedGeneration == nil then
    return "Progressing", "Waiting for the operator to schedule this ScheduledExport"
  end
  if generation ~= nil and status.observedGeneration < generation then
    return "Progressing", "Waiting for the operator to observe generation " .. generation
      .. " (status describes generation " .. status.observedGeneration .. ")"
  end
  local ready = condition(status, "Ready")
  if ready == nil or ready.status == "Unknown" then
    return "Progressing", "Waiting for the operator to set the Ready condition"
  end

  local lastRun = status.lastRun or {}
  local running = lastRun.phase == "Running" or lastRun.phase == "Pending"

  if obj.spec.suspend == true then
    if ready.status == "False" then
      return "Suspended", "Suspended; " .. describe(ready)
    end
    if ready.message ~= nil and ready.message ~= "" then
      return "Suspended", ready.message
    end
    return "Suspended", "Suspended: no run starts until spec.suspend is false"
  end
  if ready.status == "False" then
    return "Degraded", describe(ready)
  end

  local exported = condition(status, "Exported")
  if exported ~= nil and exported.status == "False" then
    local text = "Last run failed: " .. describe(exported)
      .. "; the next delivered file will hold the missed rows too"
    if running and lastRun.jobName ~= nil then
      text = text .. "; a new run is in progress (Job " .. lastRun.jobName .. ")"
    end
    return "Degraded", text
  end
  local delivered = condition(status, "Delivered")
  if delivered ~= nil and delivered.status == "False" then
    return "Degraded", describe(delivered)
  end
  local delivery = status.delivery
  if delivery ~= nil and delivery.file ~= nil
      and (delivery.lastCheckResult == "unreachable" or delivery.lastCheckResult == "missing") then
    return "Degraded", "The last check of " .. delivery.file .. " says " .. delivery.lastCheckResult
  end

  if running then
    local text = "Export running"
    if lastRun.jobName ~= nil then
      text = text .. " (Job " .. lastRun.jobName .. ")"
    end
    if lastRun.startTime ~= nil then
      text = text .. " since " .. lastRun.startTime
    end
    return "Progressing", text
  end

  local text = "Next run " .. (status.nextRunLocal or status.nextRunTime or "not scheduled")
  if delivery == nil or delivery.file == nil then
    return "Healthy", text .. "; no file delivered yet"
  end
  local notes = {}
  local result = delivery.lastCheckResult
  if result == "moved" then
    table.insert(notes, "picked up: moved to " .. (delivery.foundAt or "a sub-directory"))
  elseif result == "recopied" then
    table.insert(notes, "copied again from the artifact store after it went missing")
  elseif result ~= nil then
    table.insert(notes, result)
  end
  if delivery.recopies ~= nil and delivery.recopies > 0 then
    table.insert(notes, "recopies: " .. delivery.recopies)
  end
  if delivery.lastCheckTime ~= nil then
    table.insert(notes, "checked " .. delivery.lastCheckTime)
  end
  text = text .. "; last file " .. delivery.file
  if #notes > 0 then
    text = text .. " (" .. table.concat(notes, ", ") .. ")"
  end
  return "Healthy", text
end

local hs = {}
hs.status, hs.message = health()
return hs
