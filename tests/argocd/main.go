// Command health-harness runs an Argo CD resource health check written in Lua against one object,
// the way Argo CD's application controller runs a health script from argocd-cm
// (util/lua/lua.go in argoproj/argo-cd): gopher-lua, the standard libraries skipped except
// package, base and table, a one-second deadline, the object as the global `obj` (JSON numbers
// become Lua numbers, arrays become 1-based tables), and the value the chunk returns taken as the
// health status. Unlike Argo CD it opens no `os` library at all, so a script that needs one fails
// here instead of passing.
//
// Usage: health-harness SCRIPT.lua OBJECT.json
//
// Prints the returned table as one JSON object, e.g. {"message":"...","status":"Healthy"}, and
// exits 0; a status that Argo CD would not accept is printed the way Argo CD reports it (Unknown,
// "Lua returned an invalid health status"). Exits 1 when the script fails or returns no table,
// 2 on bad usage.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// The health statuses Argo CD accepts from a script (gitops-engine pkg/health).
var validStatuses = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true,
	"Healthy": true, "Degraded": true, "Missing": true,
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: health-harness SCRIPT.lua OBJECT.json")
		os.Exit(2)
	}
	result, err := run(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "health-harness:", err)
		os.Exit(1)
	}
	out, err := json.Marshal(result)
	if err != nil {
		fmt.Fprintln(os.Stderr, "health-harness: encode result:", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}

func run(scriptPath, objectPath string) (map[string]interface{}, error) {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return nil, err
	}
	objectText, err := os.ReadFile(objectPath)
	if err != nil {
		return nil, err
	}
	var object map[string]interface{}
	if err := json.Unmarshal(objectText, &object); err != nil {
		return nil, fmt.Errorf("%s: %w", objectPath, err)
	}

	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true},
			lua.LString(lib.name)); err != nil {
			return nil, fmt.Errorf("open %s: %w", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, object))
	if err := l.DoString(string(script)); err != nil {
		return nil, fmt.Errorf("%s: %w", scriptPath, err)
	}
	returned := l.Get(-1)
	table, ok := returned.(*lua.LTable)
	if !ok {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	result, err := encodeTable(table)
	if err != nil {
		return nil, err
	}
	status, _ := result["status"].(string)
	if !validStatuses[status] {
		return map[string]interface{}{
			"status":  "Unknown",
			"message": "Lua returned an invalid health status",
		}, nil
	}
	return result, nil
}

// decodeValue is Argo CD's conversion of an unstructured object into Lua values.
func decodeValue(l *lua.LState, value interface{}) lua.LValue {
	switch converted := value.(type) {
	case bool:
		return lua.LBool(converted)
	case float64:
		return lua.LNumber(converted)
	case string:
		return lua.LString(converted)
	case []interface{}:
		array := l.CreateTable(len(converted), 0)
		for _, item := range converted {
			array.Append(decodeValue(l, item))
		}
		return array
	case map[string]interface{}:
		table := l.CreateTable(0, len(converted))
		for key, item := range converted {
			table.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return table
	}
	return lua.LNil
}

// encodeTable turns the returned table into JSON values; keys must be strings, as in a health
// status.
func encodeTable(table *lua.LTable) (map[string]interface{}, error) {
	result := map[string]interface{}{}
	var failure error
	table.ForEach(func(key, value lua.LValue) {
		name, ok := key.(lua.LString)
		if !ok {
			failure = fmt.Errorf("returned table has a non-string key %v", key)
			return
		}
		encoded, err := encodeValue(value)
		if err != nil {
			failure = fmt.Errorf("%s: %w", string(name), err)
			return
		}
		result[string(name)] = encoded
	})
	return result, failure
}

func encodeValue(value lua.LValue) (interface{}, error) {
	switch converted := value.(type) {
	case lua.LString:
		return string(converted), nil
	case lua.LNumber:
		return float64(converted), nil
	case lua.LBool:
		return bool(converted), nil
	case *lua.LTable:
		return encodeTable(converted)
	}
	return nil, fmt.Errorf("cannot encode a Lua %s", value.Type())
}
