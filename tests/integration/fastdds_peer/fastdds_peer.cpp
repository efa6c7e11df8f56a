// fastdds_peer: a Fast DDS 2.9 stand-in for the SustainML orchestrator and the two providers.
//
// It joins a domain as ORCHESTRATOR_NODE, writes one task's three inputs (ML model, HW resources,
// user input) with the upstream peer QoS (PROTOCOL.md 3.2), then waits for the carbon node's
// CO2FootprintImpl with that task id and for a status sample of CARBON_FOOTPRINT_NODE. It prints one
// JSON line on stdout (what it received, or why not) and exits:
//   0  output and a NODE_IDLE or NODE_ERROR status received
//   2  bad command line
//   3  an input writer found no reader before the deadline (nobody there)
//   4  readers matched but no output with our task id arrived (matched but silent)
//   5  output arrived but no NODE_IDLE/NODE_ERROR status of CARBON_FOOTPRINT_NODE did
// Every wait is bounded by --timeout-s (one budget for the whole run). "round_trip_s" in the report is
// the time from writing the inputs to receiving the output.
//
// Transport: UDPv4 only, restricted to 127.0.0.1, with 127.0.0.1 as initial peer, so that discovery
// works on a loopback interface without multicast and no packet leaves the machine.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fastdds/dds/domain/DomainParticipant.hpp>
#include <fastdds/dds/domain/DomainParticipantFactory.hpp>
#include <fastdds/dds/publisher/DataWriter.hpp>
#include <fastdds/dds/publisher/Publisher.hpp>
#include <fastdds/dds/subscriber/DataReader.hpp>
#include <fastdds/dds/subscriber/DataReaderListener.hpp>
#include <fastdds/dds/subscriber/SampleInfo.hpp>
#include <fastdds/dds/subscriber/Subscriber.hpp>
#include <fastdds/dds/topic/Topic.hpp>
#include <fastdds/dds/topic/TypeSupport.hpp>
#include <fastdds/rtps/transport/UDPv4TransportDescriptor.h>
#include <fastrtps/utils/IPLocator.h>

#include "typesImpl.h"
#include "typesImplPubSubTypes.h"

using namespace eprosima::fastdds::dds;
using Clock = std::chrono::steady_clock;

namespace {

const char* const kCarbonNodeName = "CARBON_FOOTPRINT_NODE";

struct Options
{
    uint32_t domain = 0;
    bool domain_given = false;
    double timeout_s = 20.0;
    double settle_s = 0.1;
    std::string name = "ORCHESTRATOR_NODE";
    std::string model = "NO_MODEL";
    std::string model_path = "N/A";
    std::string hw_description = "PIM_AI_1chip";
    double power_w = 0.0;
    double latency = 0.0;
    std::string user_extra = "{\"num_outputs\": 1, \"model_restrains\": []}";
    uint32_t problem_id = 1;
    uint32_t iteration_id = 1;
};

void usage()
{
    std::cerr << "usage: fastdds_peer --domain N [--timeout-s S] [--settle-s S] [--name NAME] [--model NAME]\n"
                 "                    [--model-path PATH] [--hw-description TEXT] [--power-w W]\n"
                 "                    [--latency L] [--user-extra JSON] [--problem-id N] [--iteration-id N]\n";
}

bool parse_args(int argc, char** argv, Options& opt)
{
    for (int i = 1; i < argc; ++i)
    {
        const std::string arg = argv[i];
        if (i + 1 >= argc)
        {
            std::cerr << "fastdds_peer: " << arg << " needs a value\n";
            return false;
        }
        const std::string value = argv[++i];
        try
        {
            if (arg == "--domain")
            {
                opt.domain = static_cast<uint32_t>(std::stoul(value));
                opt.domain_given = true;
            }
            else if (arg == "--timeout-s") opt.timeout_s = std::stod(value);
            else if (arg == "--settle-s") opt.settle_s = std::stod(value);
            else if (arg == "--name") opt.name = value;
            else if (arg == "--model") opt.model = value;
            else if (arg == "--model-path") opt.model_path = value;
            else if (arg == "--hw-description") opt.hw_description = value;
            else if (arg == "--power-w") opt.power_w = std::stod(value);
            else if (arg == "--latency") opt.latency = std::stod(value);
            else if (arg == "--user-extra") opt.user_extra = value;
            else if (arg == "--problem-id") opt.problem_id = static_cast<uint32_t>(std::stoul(value));
            else if (arg == "--iteration-id") opt.iteration_id = static_cast<uint32_t>(std::stoul(value));
            else
            {
                std::cerr << "fastdds_peer: unknown option " << arg << "\n";
                return false;
            }
        }
        catch (const std::exception&)
        {
            std::cerr << "fastdds_peer: bad value for " << arg << ": " << value << "\n";
            return false;
        }
    }
    if (!opt.domain_given || opt.timeout_s <= 0.0 || opt.settle_s < 0.0)
    {
        std::cerr << "fastdds_peer: --domain is required, --timeout-s must be positive, --settle-s not negative\n";
        return false;
    }
    return true;
}

std::string json_string(const std::string& text)
{
    std::ostringstream out;
    out << '"';
    for (const unsigned char c : text)
    {
        if (c == '"' || c == '\\') out << '\\' << c;
        else if (c < 0x20) out << "\\u" << std::hex << std::setw(4) << std::setfill('0') << int(c) << std::dec;
        else out << c;
    }
    out << '"';
    return out.str();
}

std::string json_number(double value)
{
    if (value != value || value > 1e308 || value < -1e308) return "null";  // NaN or infinite
    std::ostringstream out;
    out << std::setprecision(17) << value;
    return out.str();
}

const char* status_name(Status status)
{
    switch (status)
    {
        case NODE_INACTIVE: return "NODE_INACTIVE";
        case NODE_ERROR: return "NODE_ERROR";
        case NODE_IDLE: return "NODE_IDLE";
        case NODE_INITIALIZING: return "NODE_INITIALIZING";
        case NODE_RUNNING: return "NODE_RUNNING";
        case NODE_TERMINATING: return "NODE_TERMINATING";
    }
    return "UNKNOWN";
}

std::vector<uint8_t> to_bytes(const std::string& text)
{
    return std::vector<uint8_t>(text.begin(), text.end());
}

// What the two readers have seen, shared between the listener threads and main.
struct Received
{
    std::mutex mutex;
    std::condition_variable changed;
    bool have_output = false;
    CO2FootprintImpl output;
    Clock::time_point output_at;
    unsigned other_outputs = 0;  // outputs for other task ids (TRANSIENT_LOCAL replays)
    std::vector<std::string> statuses;  // node_status of CARBON_FOOTPRINT_NODE, in arrival order
    std::vector<std::string> other_status_nodes;
    bool idle_or_error = false;  // a NODE_IDLE or NODE_ERROR of CARBON_FOOTPRINT_NODE was seen
};

class OutputListener : public DataReaderListener
{
public:
    OutputListener(Received& received, const TaskIdImpl& task_id)
        : received_(received), task_id_(task_id) {}

    void on_data_available(DataReader* reader) override
    {
        CO2FootprintImpl sample;
        SampleInfo info;
        while (reader->take_next_sample(&sample, &info) == ReturnCode_t::RETCODE_OK)
        {
            if (!info.valid_data) continue;
            const auto now = Clock::now();
            std::lock_guard<std::mutex> lock(received_.mutex);
            if (sample.task_id() == task_id_ && !received_.have_output)
            {
                received_.have_output = true;
                received_.output = sample;
                received_.output_at = now;
            }
            else
            {
                ++received_.other_outputs;
            }
            received_.changed.notify_all();
        }
    }

private:
    Received& received_;
    TaskIdImpl task_id_;
};

class StatusListener : public DataReaderListener
{
public:
    explicit StatusListener(Received& received) : received_(received) {}

    void on_data_available(DataReader* reader) override
    {
        NodeStatusImpl sample;
        SampleInfo info;
        while (reader->take_next_sample(&sample, &info) == ReturnCode_t::RETCODE_OK)
        {
            if (!info.valid_data) continue;
            std::lock_guard<std::mutex> lock(received_.mutex);
            if (sample.node_name() == kCarbonNodeName)
            {
                received_.statuses.push_back(status_name(sample.node_status()));
                if (sample.node_status() == NODE_IDLE || sample.node_status() == NODE_ERROR) received_.idle_or_error = true;
            }
            else
            {
                received_.other_status_nodes.push_back(sample.node_name());
            }
            received_.changed.notify_all();
        }
    }

private:
    Received& received_;
};

DomainParticipantQos participant_qos(const std::string& name)
{
    DomainParticipantQos qos = PARTICIPANT_QOS_DEFAULT;
    qos.name(name);
    auto udp = std::make_shared<eprosima::fastdds::rtps::UDPv4TransportDescriptor>();
    udp->interfaceWhiteList.emplace_back("127.0.0.1");
    qos.transport().user_transports.push_back(udp);
    qos.transport().use_builtin_transports = false;
    eprosima::fastrtps::rtps::Locator_t peer;
    eprosima::fastrtps::rtps::IPLocator::setIPv4(peer, 127, 0, 0, 1);
    qos.wire_protocol().builtin.initialPeersList.push_back(peer);
    return qos;
}

// Upstream orchestrator and provider endpoints: RELIABLE, TRANSIENT_LOCAL, KEEP_LAST 1, 500 instances
// of one sample each (PROTOCOL.md 3.2). The data representation is left at its default, as upstream.
DataWriterQos writer_qos()
{
    DataWriterQos qos = DATAWRITER_QOS_DEFAULT;
    qos.reliability().kind = RELIABLE_RELIABILITY_QOS;
    qos.durability().kind = TRANSIENT_LOCAL_DURABILITY_QOS;
    qos.history().kind = KEEP_LAST_HISTORY_QOS;
    qos.history().depth = 1;
    qos.resource_limits().max_instances = 500;
    qos.resource_limits().max_samples_per_instance = 1;
    return qos;
}

DataReaderQos reader_qos()
{
    DataReaderQos qos = DATAREADER_QOS_DEFAULT;
    qos.reliability().kind = RELIABLE_RELIABILITY_QOS;
    qos.durability().kind = TRANSIENT_LOCAL_DURABILITY_QOS;
    qos.history().kind = KEEP_LAST_HISTORY_QOS;
    qos.history().depth = 1;
    qos.resource_limits().max_instances = 500;
    qos.resource_limits().max_samples_per_instance = 1;
    return qos;
}

// The first four payload bytes the type support writes: the encapsulation (00 01 00 00 = CDR_LE,
// i.e. XCDR1), which is what Fast DDS 2.9 puts on the wire for these types.
std::string encapsulation_of(const MLModelImpl& sample)
{
    MLModelImplPubSubType type;
    eprosima::fastrtps::rtps::SerializedPayload_t payload(type.getSerializedSizeProvider(const_cast<MLModelImpl*>(&sample))());
    if (!type.serialize(const_cast<MLModelImpl*>(&sample), &payload) || payload.length < 4) return "";
    std::ostringstream out;
    for (int i = 0; i < 4; ++i)
    {
        if (i) out << ' ';
        out << std::hex << std::setw(2) << std::setfill('0') << int(payload.data[i]);
    }
    return out.str();
}

double seconds_between(Clock::time_point from, Clock::time_point to)
{
    return std::chrono::duration<double>(to - from).count();
}

}  // namespace

int main(int argc, char** argv)
{
    Options opt;
    if (!parse_args(argc, argv, opt))
    {
        usage();
        return 2;
    }
    const auto started = Clock::now();
    const auto deadline = started + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.timeout_s));

    TaskIdImpl task_id;
    task_id.problem_id(opt.problem_id);
    task_id.iteration_id(opt.iteration_id);

    DomainParticipantFactory* factory = DomainParticipantFactory::get_instance();
    DomainParticipant* participant = factory->create_participant(opt.domain, participant_qos(opt.name));
    if (participant == nullptr)
    {
        std::cerr << "fastdds_peer: cannot create a participant on domain " << opt.domain << "\n";
        return 2;
    }

    TypeSupport ml_type(new MLModelImplPubSubType());
    TypeSupport hw_type(new HWResourceImplPubSubType());
    TypeSupport user_type(new UserInputImplPubSubType());
    TypeSupport co2_type(new CO2FootprintImplPubSubType());
    TypeSupport status_type(new NodeStatusImplPubSubType());
    for (TypeSupport* type : {&ml_type, &hw_type, &user_type, &co2_type, &status_type}) type->register_type(participant);

    Topic* ml_topic = participant->create_topic("/sustainml/ml_model_provider/output", "MLModelImpl", TOPIC_QOS_DEFAULT);
    Topic* hw_topic = participant->create_topic("/sustainml/hw_resources/output", "HWResourceImpl", TOPIC_QOS_DEFAULT);
    Topic* user_topic = participant->create_topic("/sustainml/user_input", "UserInputImpl", TOPIC_QOS_DEFAULT);
    Topic* co2_topic = participant->create_topic("/sustainml/carbon_tracker/output", "CO2FootprintImpl", TOPIC_QOS_DEFAULT);
    Topic* status_topic = participant->create_topic("/sustainml/status", "NodeStatusImpl", TOPIC_QOS_DEFAULT);

    Received received;
    OutputListener output_listener(received, task_id);
    StatusListener status_listener(received);

    Publisher* publisher = participant->create_publisher(PUBLISHER_QOS_DEFAULT);
    Subscriber* subscriber = participant->create_subscriber(SUBSCRIBER_QOS_DEFAULT);
    // Readers first, so that nothing the node sends after the inputs can be missed.
    DataReader* co2_reader = subscriber->create_datareader(co2_topic, reader_qos(), &output_listener);
    DataReader* status_reader = subscriber->create_datareader(status_topic, reader_qos(), &status_listener);
    DataWriter* ml_writer = publisher->create_datawriter(ml_topic, writer_qos());
    DataWriter* hw_writer = publisher->create_datawriter(hw_topic, writer_qos());
    DataWriter* user_writer = publisher->create_datawriter(user_topic, writer_qos());
    if (!ml_topic || !hw_topic || !user_topic || !co2_topic || !status_topic || !co2_reader || !status_reader ||
        !ml_writer || !hw_writer || !user_writer)
    {
        std::cerr << "fastdds_peer: cannot create the DDS entities\n";
        return 2;
    }

    // Bounded wait until every input writer has a reader (the node is there and discovered) and both our
    // readers have a writer, then --settle-s more: a Cyclone reader drops data from a writer whose
    // discovery it has not finished, and Fast DDS resends it only at its next heartbeat (3 s later). The
    // settle time keeps that discovery race out of the measured round trip; --settle-s 0 shows it.
    auto matched = [](DataWriter* writer) {
        PublicationMatchedStatus status;
        return writer->get_publication_matched_status(status) == ReturnCode_t::RETCODE_OK && status.current_count > 0;
    };
    auto has_writer = [](DataReader* reader) {
        SubscriptionMatchedStatus status;
        return reader->get_subscription_matched_status(status) == ReturnCode_t::RETCODE_OK && status.current_count > 0;
    };
    auto all_matched = [&] {
        return matched(ml_writer) && matched(hw_writer) && matched(user_writer) && has_writer(co2_reader) &&
               has_writer(status_reader);
    };
    while (!all_matched() && Clock::now() < deadline)
    {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const auto matched_at = Clock::now();
    const bool inputs_matched = matched(ml_writer) && matched(hw_writer) && matched(user_writer);
    const auto settled_at = std::min(deadline, matched_at + std::chrono::duration_cast<Clock::duration>(
                                                                std::chrono::duration<double>(opt.settle_s)));
    if (inputs_matched) std::this_thread::sleep_until(settled_at);

    MLModelImpl ml;
    ml.model(opt.model);
    ml.model_path(opt.model_path);
    ml.extra_data(to_bytes("{\"unsupported_models\": []}"));
    ml.task_id(task_id);
    HWResourceImpl hw;
    hw.hw_description(opt.hw_description);
    hw.power_consumption(opt.power_w);
    hw.latency(opt.latency);
    hw.task_id(task_id);
    UserInputImpl user;
    user.modality("text");
    user.problem_short_description("fastdds interop test");
    user.extra_data(to_bytes(opt.user_extra));
    user.task_id(task_id);

    Clock::time_point sent_at;
    int exit_code = 0;
    std::string error;
    if (!inputs_matched)
    {
        exit_code = 3;
        error = "no reader matched the input writers within the timeout (is the node running on this domain?)";
    }
    else
    {
        sent_at = Clock::now();
        ml_writer->write(&ml);
        hw_writer->write(&hw);
        user_writer->write(&user);
        std::unique_lock<std::mutex> lock(received.mutex);
        received.changed.wait_until(lock, deadline, [&] { return received.have_output && received.idle_or_error; });
        if (!received.have_output)
        {
            exit_code = 4;
            error = "the input writers are matched but no CO2FootprintImpl with our task id arrived within the timeout";
        }
        else if (!received.idle_or_error)
        {
            exit_code = 5;
            error = "the output arrived but no NODE_IDLE/NODE_ERROR status of CARBON_FOOTPRINT_NODE did";
        }
    }

    PublicationMatchedStatus ml_status;
    ml_writer->get_publication_matched_status(ml_status);
    SubscriptionMatchedStatus co2_status;
    co2_reader->get_subscription_matched_status(co2_status);
    SubscriptionMatchedStatus status_status;
    status_reader->get_subscription_matched_status(status_status);

    std::ostringstream line;
    {
        std::lock_guard<std::mutex> lock(received.mutex);
        line << "{\"ok\": " << (exit_code == 0 ? "true" : "false");
        line << ", \"error\": " << (error.empty() ? "null" : json_string(error));
        line << ", \"task_id\": {\"problem_id\": " << opt.problem_id << ", \"iteration_id\": " << opt.iteration_id << "}";
        line << ", \"input_encapsulation\": " << json_string(encapsulation_of(ml));
        line << ", \"matched\": {\"inputs\": " << (inputs_matched ? "true" : "false")
             << ", \"ml_model_readers\": " << ml_status.current_count
             << ", \"output_writers\": " << co2_status.current_count
             << ", \"status_writers\": " << status_status.current_count << "}";
        if (received.have_output)
        {
            const CO2FootprintImpl& out = received.output;
            line << ", \"output\": {\"task_id\": {\"problem_id\": " << out.task_id().problem_id()
                 << ", \"iteration_id\": " << out.task_id().iteration_id() << "}"
                 << ", \"carbon_footprint\": " << json_number(out.carbon_footprint())
                 << ", \"energy_consumption\": " << json_number(out.energy_consumption())
                 << ", \"carbon_intensity\": " << json_number(out.carbon_intensity())
                 << ", \"extra_data\": " << json_string(std::string(out.extra_data().begin(), out.extra_data().end()))
                 << "}";
        }
        else
        {
            line << ", \"output\": null";
        }
        line << ", \"other_outputs\": " << received.other_outputs;
        line << ", \"statuses\": [";
        for (size_t i = 0; i < received.statuses.size(); ++i) line << (i ? ", " : "") << json_string(received.statuses[i]);
        line << "], \"other_status_nodes\": [";
        for (size_t i = 0; i < received.other_status_nodes.size(); ++i)
            line << (i ? ", " : "") << json_string(received.other_status_nodes[i]);
        line << "], \"timings\": {\"match_s\": " << json_number(seconds_between(started, matched_at));
        line << ", \"round_trip_s\": "
             << (received.have_output && inputs_matched ? json_number(seconds_between(sent_at, received.output_at)) : "null");
        line << "}}";
    }
    std::cout << line.str() << std::endl;
    if (!error.empty()) std::cerr << "fastdds_peer: " << error << "\n";

    participant->delete_contained_entities();
    factory->delete_participant(participant);
    return exit_code;
}
