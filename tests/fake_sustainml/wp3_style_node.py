"""A node written the upstream way (the wp3 structure), importing the node class from carbon_node.

Used by the integration tests as a separate process: it must run unchanged apart from the import.
The callback answers NO_MODEL tasks like wp3 and everything else with the HW energy.
"""

import json
import signal
import sys
import threading
import time

from carbon_node import CarbonFootprintNode

running = False


def signal_handler(sig, frame):
    CarbonFootprintNode.terminate()
    global running
    running = False


def task_callback(ml_model, user_input, hw, node_status, co2):
    model_name = ml_model.model()
    output_extra_data = {"num_outputs": 1, "model_restrains": [model_name]}
    extra_data_bytes = user_input.extra_data()
    if extra_data_bytes:
        user_extra = json.loads("".join(chr(b) for b in extra_data_bytes))
        if "num_outputs" in user_extra and user_extra["num_outputs"] != "":
            output_extra_data["num_outputs"] = user_extra["num_outputs"]
    if str(model_name).upper() == "NO_MODEL":
        co2.carbon_footprint(0.0)
        co2.energy_consumption(0.0)
        co2.carbon_intensity(0.0)
        output_extra_data.update({"mode": "no_model", "error": "No model selected (NO_MODEL). Carbon footprint not computed."})
        co2.extra_data(json.dumps(output_extra_data).encode("utf-8"))
        return
    energy_kwh = float(hw.power_consumption()) * float(hw.latency()) / 1000.0
    co2.carbon_footprint(energy_kwh * 100.0)
    co2.energy_consumption(energy_kwh)
    co2.carbon_intensity(100.0)
    output_extra_data["mode"] = "onnx_hw_only"
    co2.extra_data(json.dumps(output_extra_data).encode("utf-8"))


def configuration_callback(req, res):
    res.node_id(req.node_id())
    res.transaction_id(req.transaction_id())
    error_msg = f"Unsupported configuration request: {req.configuration()}"
    res.configuration(json.dumps({"error": error_msg}))
    res.success(False)
    res.err_code(1)


def run():
    global running
    running = True
    node = CarbonFootprintNode(callback=task_callback, service_callback=configuration_callback)
    node.spin()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal_handler)
    runner = threading.Thread(target=run)
    runner.start()
    while running or runner.is_alive():
        time.sleep(0.1)
        if not runner.is_alive():
            break
    runner.join()
    sys.exit(0)
